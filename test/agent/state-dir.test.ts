import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {claimStateDir, removeTempFiles} from '../../src/agent/state-dir.js'
import {RecordingLog, tempStateDir} from './fakes.js'
import {REPO_ROOT} from '../support/cli.js'
import {StateDisk} from '../../src/agent/state-disk.js'

let state: ReturnType<typeof tempStateDir>
beforeEach(() => {
  state = tempStateDir()
})
afterEach(() => state.remove())

function outOfSpace(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), {code: 'ENOSPC'})
}

describe('claimStateDir', () => {
  it('refuses (exit 4) while another live process holds the state dir, naming its pid; takes it over once that one is gone', async () => {
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], {stdio: 'ignore'})
    const pidFile = join(state.dir, 'agent.pid')
    writeFileSync(pidFile, `${other.pid}\n`)
    try {
      expect(() => claimStateDir(state.dir)).toThrow(expect.objectContaining({code: 'agent_running', exit: 4, message: `another agent (pid ${other.pid}) runs with the state dir ${state.dir}`}))
      expect(readFileSync(pidFile, 'utf8')).toBe(`${other.pid}\n`)
    } finally {
      other.kill('SIGKILL')
      await new Promise((resolve) => other.once('exit', resolve))
    }
    const claim = claimStateDir(state.dir)
    expect(readFileSync(pidFile, 'utf8')).toBe(`${process.pid}\n`)
    claim.release()
    expect(existsSync(pidFile)).toBe(false)
    expect(readdirSync(state.dir)).toEqual([])
  })

  it('lets exactly one of several agents started together have it (the built code, in separate processes)', async () => {
    const claimer = `import('${pathToFileURL(join(REPO_ROOT, 'dist', 'agent', 'state-dir.js')).href}').then(({claimStateDir}) => {
      try { claimStateDir(process.argv[1]); process.stdout.write('held') } catch (error) { process.stdout.write(error.code) }
      process.stdin.resume()
    })`
    const children = Array.from({length: 6}, () => spawn(process.execPath, ['-e', claimer, state.dir], {stdio: ['pipe', 'pipe', 'ignore']}))
    const answers = await Promise.all(children.map((child) => new Promise<string>((resolve) => child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString())))))
    for (const child of children) child.stdin.end()
    await Promise.all(children.map((child) => new Promise((resolve) => child.once('exit', resolve))))
    expect(answers.sort()).toEqual(['agent_running', 'agent_running', 'agent_running', 'agent_running', 'agent_running', 'held'])
  })

  it('takes over a garbled pid file, and its release leaves a file another agent wrote since alone', () => {
    const pidFile = join(state.dir, 'agent.pid')
    writeFileSync(pidFile, 'not a pid')
    const claim = claimStateDir(state.dir)
    expect(readFileSync(pidFile, 'utf8')).toBe(`${process.pid}\n`)
    writeFileSync(pidFile, '999999999\n')
    claim.release()
    expect(readFileSync(pidFile, 'utf8')).toBe('999999999\n')
  })
})

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
