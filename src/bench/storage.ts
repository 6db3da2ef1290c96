import {closeSync, constants, fsyncSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeSync} from 'node:fs'
import {join} from 'node:path'

/**
 * Storage: sequential MiB/s in 1 MiB blocks and random 4 KiB IOPS at queue depth 1 (one synchronous request at a
 * time, like fio's psync engine with iodepth=1), in a temporary file on the storage being measured. The page cache is
 * bypassed with O_DIRECT where the OS and filesystem allow it; O_DIRECT wants block-aligned memory, and a
 * WebAssembly memory is page-aligned (JavaScript can't align an ordinary Buffer).
 */

const MIB = 2 ** 20
const BLOCK = 4096
const SEQUENTIAL_BLOCK = MIB

export interface StorageRun {
  path: string
  file_mib: number
  direct_io: boolean
  seq_write_mib_per_second: number
  seq_read_mib_per_second: number
  rand_read_iops: number
  rand_write_iops: number
  /** Why the page cache was not bypassed, when it wasn't. */
  note?: string
}

/** The part of the WebAssembly API used here; the project's TypeScript lib (ES2023, no DOM) doesn't declare its values. */
interface WasmGlobal {
  WebAssembly: {Memory: new (descriptor: {initial: number}) => {buffer: ArrayBuffer}}
}

function alignedBuffer(bytes: number): Buffer {
  const memory = new (globalThis as unknown as WasmGlobal).WebAssembly.Memory({initial: Math.ceil(bytes / 65_536)})
  return Buffer.from(memory.buffer, 0, bytes)
}

function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as {code: unknown}).code) : undefined
}

/** Opens with O_DIRECT and proves it with one write from `buffer`; on refusal, opens buffered and says why. */
export function openForBenchmark(file: string, buffer: Buffer): {fd: number; direct: boolean; note?: string} {
  const flags = constants.O_RDWR | constants.O_CREAT
  const direct = (constants as Record<string, number | undefined>).O_DIRECT
  if (direct === undefined) return {fd: openSync(file, flags, 0o600), direct: false, note: 'this OS has no O_DIRECT: buffered I/O, reads may come from the page cache'}
  let fd: number | undefined
  try {
    fd = openSync(file, flags | direct, 0o600)
    writeSync(fd, buffer, 0, BLOCK, 0)
    return {fd, direct: true}
  } catch (error) {
    if (fd !== undefined) closeSync(fd)
    return {
      fd: openSync(file, flags, 0o600),
      direct: false,
      note: `the filesystem refuses O_DIRECT (${errorCode(error) ?? 'error'}): buffered I/O, so reads may come from the page cache`,
    }
  }
}

function timed(durationMs: number, minimumRounds: number, round: () => number): {units: number; seconds: number} {
  const start = performance.now()
  let units = 0
  let rounds = 0
  let elapsed = 0
  do {
    units += round()
    rounds++
    elapsed = performance.now() - start
  } while (elapsed < durationMs || rounds < minimumRounds)
  return {units, seconds: elapsed / 1000}
}

function randomBlockOffset(blocks: number): number {
  return Math.floor(Math.random() * blocks) * BLOCK
}

export function measureStorage(options: {dir: string; fileMib: number; durationMs: number}): StorageRun {
  // The default is the agent's state dir: if this creates it, it gets the agent's private mode.
  mkdirSync(options.dir, {recursive: true, mode: 0o700})
  const workDir = mkdtempSync(join(options.dir, '.outpost-bench-'))
  const file = join(workDir, 'storage.bin')
  const size = options.fileMib * MIB
  const blocks = size / BLOCK
  const buffer = alignedBuffer(SEQUENTIAL_BLOCK)
  // Random bytes, so no layer below can compress or deduplicate the writes away.
  for (let offset = 0; offset < buffer.length; offset += 4) buffer.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, offset)
  const {fd, direct, note} = openForBenchmark(file, buffer)
  try {
    // One fsync at the end of the run, as fio's --end_fsync=1: one per pass over the file (a disk cache flush each)
    // measured the flushes, not the writes (0.47 × fio's figure on a virtio disk).
    const writePass = () => {
      for (let offset = 0; offset < size; offset += SEQUENTIAL_BLOCK) writeSync(fd, buffer, 0, SEQUENTIAL_BLOCK, offset)
      return size
    }
    const readPass = () => {
      for (let offset = 0; offset < size; offset += SEQUENTIAL_BLOCK) readSync(fd, buffer, 0, SEQUENTIAL_BLOCK, offset)
      return size
    }
    // Laid out first, as fio lays out its file before a job: the timed passes overwrite blocks the filesystem has
    // allocated, where a first pass that extended the file measured the allocation too.
    writePass()
    fsyncSync(fd)
    const writes = timed(options.durationMs, 1, writePass)
    const flushStart = performance.now()
    fsyncSync(fd)
    const seqWrite = {units: writes.units, seconds: writes.seconds + (performance.now() - flushStart) / 1000}
    const seqRead = timed(options.durationMs, 1, readPass)
    const randRead = timed(options.durationMs, 1, () => readSync(fd, buffer, 0, BLOCK, randomBlockOffset(blocks)) / BLOCK)
    const randWrite = timed(options.durationMs, 1, () => writeSync(fd, buffer, 0, BLOCK, randomBlockOffset(blocks)) / BLOCK)
    return {
      path: options.dir,
      file_mib: options.fileMib,
      direct_io: direct,
      seq_write_mib_per_second: seqWrite.units / MIB / seqWrite.seconds,
      seq_read_mib_per_second: seqRead.units / MIB / seqRead.seconds,
      rand_read_iops: randRead.units / randRead.seconds,
      rand_write_iops: randWrite.units / randWrite.seconds,
      ...(note ? {note} : {}),
    }
  } finally {
    closeSync(fd)
    rmSync(workDir, {recursive: true, force: true})
  }
}
