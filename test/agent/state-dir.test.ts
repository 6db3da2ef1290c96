import {existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {removeTempFiles} from '../../src/agent/state-dir.js'
import {RecordingLog, tempStateDir} from './fakes.js'
import {StateDisk} from '../../src/agent/state-disk.js'

let state: ReturnType<typeof tempStateDir>
beforeEach(() => {
  state = tempStateDir()
})
afterEach(() => state.remove())

function outOfSpace(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), {code: 'ENOSPC'})
}

describe('removeTempFiles', () => {
  it('removes the temporary files of cut-short writes under the state dir, and nothing else', () => {
    mkdirSync(join(state.dir, 'local'))
    mkdirSync(join(state.dir, 'outbox'))
    const old = [join(state.dir, '.agent-id.0123456789ab.tmp'), join(state.dir, 'local', '.outpost-x.json.a1b2c3d4e5f6.tmp'), join(state.dir, 'outbox', '.0001-000001.json.ffffffffffff.tmp')]
    const kept = [join(state.dir, 'journal.jsonl'), join(state.dir, 'outbox', '0001-000001.json'), join(state.dir, 'notes.tmp'), join(state.dir, '.recent.abcdefabcdef.tmp')]
    for (const path of [...old, ...kept]) writeFileSync(path, 'x')
    for (const path of old) utimesSync(path, new Date(1000), new Date(1000))
    const before = Date.now() - 60_000
    utimesSync(kept[3] ?? '', new Date(), new Date())
    expect(removeTempFiles(state.dir, before).sort()).toEqual([...old].sort())
    for (const path of old) expect(existsSync(path)).toBe(false)
    for (const path of kept) expect(existsSync(path)).toBe(true)
  })
})

describe('StateDisk', () => {
  it('logs one line when the disk fills, takes other errors for the caller, and recovers once what waits is written', async () => {
    const log = new RecordingLog()
    const changes: boolean[] = []
    const disk = new StateDisk({dir: state.dir, log, onChange: (full) => changes.push(full)})
    expect(disk.noteFailure('/x', Object.assign(new Error('EIO'), {code: 'EIO'}))).toBe(false)
    expect(disk.full).toBe(false)
    expect(disk.noteFailure(join(state.dir, 'outbox'), outOfSpace())).toBe(true)
    expect(disk.noteFailure(join(state.dir, 'journal.jsonl'), outOfSpace())).toBe(true)
    expect(disk.full).toBe(true)
    expect(log.lines.filter((line) => line.level === 'error')).toHaveLength(1)
    expect(log.lines[0]?.details).toMatchObject({path: join(state.dir, 'outbox'), code: 'ENOSPC'})
    expect(typeof log.lines[0]?.details.free_bytes).toBe('number')

    let stillFull = true
    const written: string[] = []
    disk.onRecovery('outbox', () => {
      if (stillFull) throw outOfSpace()
      written.push('outbox')
    })
    const room = disk.room(new AbortController().signal)
    expect(disk.retry()).toBe(false)
    stillFull = false
    expect(disk.retry()).toBe(true)
    await room
    expect(written).toEqual(['outbox'])
    expect(disk.full).toBe(false)
    expect(changes).toEqual([true, false])
    expect(log.lines.map((line) => line.level)).toEqual(['error', 'info'])
    expect(readdirSync(state.dir)).toEqual([])
  })
})
