import {closeSync, mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {measureCpu} from '../../src/bench/cpu.js'
import {measureMemory, measureSequential} from '../../src/bench/memory.js'
import {measureStorage, openForBenchmark} from '../../src/bench/storage.js'

const dirs: string[] = []
function tempDir(base = tmpdir()): string {
  const dir = mkdtempSync(join(base, 'outpost-bench-test-'))
  dirs.push(dir)
  return dir
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

describe('benchmark kernels measure for real', () => {
  it('CPU: the sysbench event (1228 primes from 3 below 10000) at a positive rate on one and on two threads', async () => {
    const single = await measureCpu({threads: 1, durationMs: 150})
    expect(single.primes_per_event).toBe(1228)
    expect(single.events_per_second).toBeGreaterThan(10)
    const two = await measureCpu({threads: 2, durationMs: 150})
    expect(two.threads).toBe(2)
    expect(two.events_per_second).toBeGreaterThan(10)
  })

  it('memory: the triad reports a bandwidth between 100 MiB/s and 1 TiB/s, best at least the mean', () => {
    const run = measureMemory({elements: 2 ** 18, durationMs: 50})
    expect(run.passes).toBeGreaterThanOrEqual(3)
    expect(run.array_mib).toBe(2)
    expect(run.triad_mib_per_second).toBeGreaterThan(100)
    expect(run.triad_mib_per_second).toBeLessThan(2 ** 20)
    expect(run.triad_mib_per_second).toBeGreaterThanOrEqual(run.triad_mean_mib_per_second)
  })

  it('memory: the sequential kernel reads back what it wrote and reports read and write rates between 100 MiB/s and 1 TiB/s', () => {
    const run = measureSequential({blockMib: 8, durationMs: 30})
    expect(run.block_mib).toBe(8)
    for (const rate of [run.read_mib_per_second, run.write_mib_per_second]) {
      expect(rate).toBeGreaterThan(100)
      expect(rate).toBeLessThan(2 ** 20)
    }
  })

  it('storage: positive IOPS and MiB/s with O_DIRECT where the filesystem takes it, and the temp files removed', () => {
    const dir = tempDir()
    const run = measureStorage({dir, fileMib: 4, durationMs: 60})
    for (const figure of [run.seq_write_mib_per_second, run.seq_read_mib_per_second, run.rand_read_iops, run.rand_write_iops]) expect(figure).toBeGreaterThan(0)
    if (run.direct_io) expect(run.note).toBeUndefined()
    else expect(run.note).toMatch(/O_DIRECT/)
    expect(readdirSync(dir)).toEqual([])
  })

  it('storage: when the kernel refuses an O_DIRECT write, the file is opened buffered and the note says so', () => {
    const file = join(tempDir(), 'probe.bin')
    // O_DIRECT needs aligned memory: an ordinary Buffer one byte in is refused (EINVAL) like a filesystem without it.
    const unaligned = Buffer.alloc(8192).subarray(1)
    const opened = openForBenchmark(file, unaligned)
    closeSync(opened.fd)
    expect(opened).toMatchObject({direct: false, note: expect.stringMatching(/refuses O_DIRECT \(EINVAL\): buffered I\/O/)})
  })
})
