import {execFileSync} from 'node:child_process'
import {appendFileSync, closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'

import {Outbox, outboxDir, readOutbox, type OutboxEntry, type Report} from '../../src/agent/outbox.js'

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

  it('sets a damaged line aside in outbox.log.bad instead of blocking the queue, and keeps the lines after it', () => {
    const dir = stateDir()
    const outbox = new Outbox(dir)
    outbox.add(terminated('a'), 1000)
    appendFileSync(outbox.path, '{"add": {"id": "damaged"}}\n')
    outbox.add(terminated('b'), 1002)
    outbox.close()
    const {entries, quarantined} = new Outbox(dir).load()
    expect(entries.map((entry) => 'contract_id' in entry.report && entry.report.contract_id)).toEqual(['a', 'b'])
    expect(quarantined).toEqual([`${outbox.path}.bad`])
    expect(readFileSync(`${outbox.path}.bad`, 'utf8')).toBe('{"add": {"id": "damaged"}}\n')
    expect(statSync(`${outbox.path}.bad`).mode & 0o777).toBe(0o600)
    // Set aside once: the log was written back without it.
    expect(new Outbox(dir).load().quarantined).toEqual([])
  })

  it('drops a line a crash cut short (that report was never sent) and appends readable lines after it', () => {
    const dir = stateDir()
    const outbox = new Outbox(dir)
    outbox.add(terminated('a'), 1000)
    outbox.close()
    appendFileSync(outbox.path, '{"add":{"id":"0000000000001001-000001","created_at":1001,"rep')
    expect(readOutbox(dir).map((entry) => entry.id)).toHaveLength(1)
    const restarted = new Outbox(dir)
    expect(restarted.load()).toMatchObject({entries: [{report: terminated('a')}], quarantined: []})
    restarted.add(terminated('b'), 1003)
    restarted.close()
    expect(new Outbox(dir).load().entries.map((entry) => 'contract_id' in entry.report && entry.report.contract_id)).toEqual(['a', 'b'])
  })

  it('keeps one log file, 0600, and leaves no temporary file behind', () => {
    const outbox = new Outbox(stateDir())
    outbox.add({kind: 'usage', records: [{record_id: 'r', contract_id: 'c', period_start: 0, period_end: 1, cpu_core_seconds: 1, memory_mb_seconds: 1, storage_gb_seconds: 1, gpu_seconds: 0, signer: 's', signature: 'x'}]})
    expect(readdirSync(outbox.dir)).toEqual(['outbox.log'])
    expect(statSync(outbox.path).mode & 0o777).toBe(0o600)
  })

  it('takes up the file-per-report outbox an older version left, in order, into the log, and removes the files', () => {
    const dir = stateDir()
    const legacy = outboxDir(dir)
    mkdirSync(legacy, {recursive: true})
    const old = (id: string, contractId: string): OutboxEntry => ({id, created_at: Number(id.slice(0, 16)), report: terminated(contractId)})
    writeFileSync(join(legacy, '0000000000002000-000002.json'), JSON.stringify(old('0000000000002000-000002', 'second')) + '\n')
    writeFileSync(join(legacy, '0000000000002000-000001.json'), JSON.stringify(old('0000000000002000-000001', 'first')) + '\n')
    writeFileSync(join(legacy, '0000000000002001-000001.json'), '{"id": "torn')
    // Reading (outpost status, contract show) changes nothing.
    expect(readOutbox(dir).map((entry) => entry.id)).toEqual(['0000000000002000-000001', '0000000000002000-000002'])
    expect(readdirSync(legacy)).toHaveLength(3)
    const outbox = new Outbox(dir)
    const {entries, quarantined} = outbox.load()
    expect(entries.map((entry) => 'contract_id' in entry.report && entry.report.contract_id)).toEqual(['first', 'second'])
    expect(quarantined).toEqual([join(legacy, '0000000000002001-000001.json.bad')])
    expect(readdirSync(legacy).sort()).toEqual(['0000000000002001-000001.json.bad', 'outbox.log'])
    expect(outbox.add(terminated('third'), 1).id > '0000000000002000-000002').toBe(true)
    outbox.close()
    expect(new Outbox(dir).load().entries).toHaveLength(3)
  })

  it('takes a line that crossed off an older version\'s file as the later word (the file stayed when the disk was too full to take it into the log)', () => {
    const dir = stateDir()
    const legacy = outboxDir(dir)
    mkdirSync(legacy, {recursive: true})
    const id = '0000000000003000-000001'
    writeFileSync(join(legacy, `${id}.json`), JSON.stringify({id, created_at: 3000, report: terminated('delivered')}) + '\n')
    writeFileSync(join(legacy, 'outbox.log'), JSON.stringify({done: id}) + '\n')
    expect(readOutbox(dir)).toEqual([])
    expect(new Outbox(dir).load().entries).toEqual([])
  })

  it('empties the log once nothing waits, and writes it anew when it is mostly crossed-off entries', () => {
    const outbox = new Outbox(stateDir())
    const large = (contractId: string): Report => ({kind: 'provisioning', contract_id: contractId, status: 'provisioning_failed', error: 'x'.repeat(200_000), unlock: true})
    const first = Array.from({length: 6}, (_, index) => outbox.add(large(`c${index}`)))
    for (const entry of first) outbox.remove(entry)
    expect(statSync(outbox.path).size).toBe(0)
    const kept = outbox.add(terminated('kept'))
    const second = Array.from({length: 6}, (_, index) => outbox.add(large(`d${index}`)))
    for (const entry of second) outbox.remove(entry)
    // 2.4 MB appended in all; the log never holds more than a rewrite's threshold beside what still waits.
    expect(statSync(outbox.path).size).toBeLessThan(1024 * 1024)
    outbox.close()
    expect(new Outbox(outbox.dir.replace(/\/outbox$/, '')).load().entries.map((entry) => entry.id)).toEqual([kept.id])
  })

  describe.skipIf(process.getuid?.() !== 0)('on a filesystem that fills up (a 1 MiB tmpfs: mounting needs root)', () => {
    let mount = ''
    afterEach(() => {
      if (mount) execFileSync('umount', ['--lazy', mount])
      if (mount) rmSync(mount, {recursive: true, force: true})
      mount = ''
    })

    it('takes a report the disk cut short back out of the log, so the next line is whole once there is room', () => {
      mount = mkdtempSync(join(tmpdir(), 'outpost-outbox-small-'))
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mount])
      const dir = join(mount, 'state')
      const outbox = new Outbox(dir)
      const first = outbox.add(terminated('a'), 1000)
      // Fill the disk, then give back 8 KiB: a 64 KiB report is written in part, then refused.
      const filler = join(mount, 'filler')
      const fd = openSync(filler, 'w')
      try {
        for (;;) writeSync(fd, Buffer.alloc(4096, 1))
      } catch (error) {
        expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC')
      }
      ftruncateSync(fd, statSync(filler).size - 8192)
      closeSync(fd)
      const large: Report = {kind: 'provisioning', contract_id: 'large', status: 'provisioning_failed', error: 'x'.repeat(64 * 1024), unlock: false}
      expect(() => outbox.add(large, 1001)).toThrow(/ENOSPC/)
      // Crossing an entry off on a full disk keeps it in the log: sent again after a restart, answered the same.
      outbox.remove(first)
      rmSync(filler)
      outbox.add(terminated('b'), 1002)
      outbox.close()
      const lines = readFileSync(outbox.path, 'utf8').split('\n').filter(Boolean)
      for (const line of lines) expect(() => JSON.parse(line) as unknown, line.slice(0, 80)).not.toThrow()
      const {entries, quarantined} = new Outbox(dir).load()
      expect(quarantined).toEqual([])
      expect(entries.map((entry) => 'contract_id' in entry.report && entry.report.contract_id)).not.toContain('large')
      expect(entries.map((entry) => 'contract_id' in entry.report && entry.report.contract_id)).toContain('b')
    })

    it('comes up on a disk too full to create its log: what waits is read, and a write is refused (for the reporter to keep) until there is room', () => {
      mount = mkdtempSync(join(tmpdir(), 'outpost-outbox-small-'))
      // Three inodes: the mount, state/ and state/outbox/; the log itself finds none.
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=3,mode=0700', 'tmpfs', mount])
      const outbox = new Outbox(join(mount, 'state'))
      expect(outbox.load()).toEqual({entries: [], quarantined: []})
      const entry = outbox.entry(terminated('a'))
      expect(() => outbox.write(entry)).toThrow(/ENOSPC/)
      expect(outbox.depth()).toBe(0)
      execFileSync('mount', ['-o', 'remount,nr_inodes=16', mount])
      outbox.write(entry)
      outbox.close()
      expect(new Outbox(join(mount, 'state')).load().entries).toEqual([entry])
    })
  })
})
