import {mkdtempSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'

import {Outbox, type Report} from '../../src/agent/outbox.js'

const dirs: string[] = []
function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-outbox-'))
  dirs.push(dir)
  return dir
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, {recursive: true, force: true})
})

const terminated = (contractId: string): Report => ({kind: 'terminated', contract_id: contractId})

describe('Outbox', () => {
  it('keeps reports on disk in the order they were made, across a restart', () => {
    const dir = stateDir()
    const outbox = new Outbox(dir)
    // Same millisecond, and a clock that went back: the order is still the order of add().
    outbox.add(terminated('a'), 1000)
    outbox.add(terminated('b'), 1000)
    outbox.add(terminated('c'), 900)
    const restarted = new Outbox(dir)
    const {entries, quarantined} = restarted.load()
    expect(quarantined).toEqual([])
    expect(entries.map((entry) => 'contract_id' in entry.report && entry.report.contract_id)).toEqual(['a', 'b', 'c'])
    // Ids made after a restart sort after every loaded one.
    const next = restarted.add(terminated('d'), 500)
    expect(restarted.load().entries.map((entry) => entry.id).at(-1)).toBe(next.id)
  })

  it('removes an entry for good', () => {
    const outbox = new Outbox(stateDir())
    const entry = outbox.add(terminated('a'))
    outbox.add(terminated('b'))
    outbox.remove(entry)
    expect(outbox.depth()).toBe(1)
    expect(outbox.load().entries.map((item) => item.id)).not.toContain(entry.id)
  })

  it('moves a damaged entry aside instead of blocking the queue', () => {
    const dir = stateDir()
    const outbox = new Outbox(dir)
    outbox.add(terminated('a'), 1000)
    writeFileSync(join(outbox.dir, '0000000000001001-000001.json'), '{"id": "torn')
    outbox.add(terminated('b'), 1002)
    const {entries, quarantined} = new Outbox(dir).load()
    expect(entries).toHaveLength(2)
    expect(quarantined).toHaveLength(1)
    expect(readdirSync(outbox.dir).filter((file) => file.endsWith('.bad'))).toHaveLength(1)
  })

  it('writes no temporary files it leaves behind, and entries are 0600', () => {
    const outbox = new Outbox(stateDir())
    const entry = outbox.add({kind: 'usage', records: [{record_id: 'r', contract_id: 'c', period_start: 0, period_end: 1, cpu_core_seconds: 1, memory_mb_seconds: 1, storage_gb_seconds: 1, gpu_seconds: 0, signer: 's', signature: 'x'}]})
    expect(readdirSync(outbox.dir)).toEqual([`${entry.id}.json`])
    expect(statSync(join(outbox.dir, `${entry.id}.json`)).mode & 0o777).toBe(0o600)
  })
})
