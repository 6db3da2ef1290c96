import {existsSync, mkdirSync, utimesSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {pruneArchives} from '../../src/agent/archive.js'
import {HealthArchive, readArchivedHealthChecks} from '../../src/agent/health-archive.js'
import {tempStateDir} from './fakes.js'

let state: ReturnType<typeof tempStateDir>
beforeEach(() => {
  state = tempStateDir()
})
afterEach(() => state.remove())

const DAY = 86_400_000

function archiveFileAged(kind: 'usage' | 'health', name: string, ageMs: number, now: number): string {
  const file = join(state.dir, kind, name)
  mkdirSync(join(state.dir, kind), {recursive: true})
  writeFileSync(file, '{}\n')
  utimesSync(file, (now - ageMs) / 1000, (now - ageMs) / 1000)
  return file
}

describe('pruneArchives', () => {
  it('removes the usage and health archives last written longer ago than the age, and nothing else', () => {
    const now = Date.now()
    const oldUsage = archiveFileAged('usage', 'aaaaaaaaaaaaaaaa.jsonl', 10 * DAY, now)
    const oldHealth = archiveFileAged('health', 'bbbbbbbbbbbbbbbb.jsonl', 10 * DAY, now)
    const fresh = archiveFileAged('health', 'cccccccccccccccc.jsonl', 2 * DAY, now)
    const notAnArchive = archiveFileAged('usage', 'notes.txt', 10 * DAY, now)
    expect(pruneArchives(state.dir, 7 * DAY, now).sort()).toEqual([oldHealth, oldUsage].sort())
    expect([oldUsage, oldHealth, fresh, notAnArchive].map((file) => existsSync(file))).toEqual([false, false, true, true])
  })

  it('is fine with a state dir that has no archives yet', () => {
    expect(pruneArchives(join(state.dir, 'nothing'), DAY)).toEqual([])
  })
})

describe('HealthArchive', () => {
  it('keeps checks per contract, reads them back oldest first, and skips lines that do not parse', () => {
    const id = 'ef'.repeat(16)
    const archive = new HealthArchive(state.dir)
    archive.add([
      {contract_id: id, status: 'healthy', checked_at: 2000, uptime_seconds: 5},
      {contract_id: id, status: 'unknown', checked_at: 1000, details: {error: 'timeout'}},
      {contract_id: 'not-a-contract-id', status: 'healthy', checked_at: 1500},
    ])
    writeFileSync(join(state.dir, 'health', `${id}.jsonl`), '{"torn\n', {flag: 'a'})
    const read = readArchivedHealthChecks(state.dir, id)
    expect(read.checks.map((check) => check.checked_at)).toEqual([1000, 2000])
    expect(read.skipped).toBe(1)
  })
})
