/**
 * Memory bandwidth, two ways. Sequential read and write passes over one block, the pattern of `sysbench memory`
 * (one thread, 256 MiB block), in WebAssembly with 128-bit loads and stores: a JavaScript loop moves 8 bytes per
 * step and measured the loop, not the memory (0.3 × sysbench here). And STREAM's triad, a[i] = b[i] + s * c[i] over
 * three large Float64Arrays, bytes counted as STREAM counts them (24 per element) and the best pass reported, as
 * STREAM does.
 *
 * The sequential kernel's source (WAT), assembled by hand into SEQUENTIAL_WASM:
 *
 *   (import "env" "memory" (memory 1))
 *   (func (export "read") (param $bytes i32) (result i32) (local $p i32) (local $acc v128)
 *     (block $done (loop $next
 *       (br_if $done (i32.ge_u (local.get $p) (local.get $bytes)))
 *       (local.set $acc (v128.or (v128.or (v128.or (v128.or (local.get $acc)
 *         (v128.load offset=0 (local.get $p))) (v128.load offset=16 (local.get $p)))
 *         (v128.load offset=32 (local.get $p))) (v128.load offset=48 (local.get $p))))
 *       (local.set $p (i32.add (local.get $p) (i32.const 64)))
 *       (br $next)))
 *     (i32x4.extract_lane 0 (local.get $acc)))
 *   (func (export "write") (param $bytes i32) (param $value i32) (local $p i32) (local $v v128)
 *     (local.set $v (i32x4.splat (local.get $value)))
 *     (block $done (loop $next
 *       (br_if $done (i32.ge_u (local.get $p) (local.get $bytes)))
 *       (v128.store offset=0 (local.get $p) (local.get $v)) (v128.store offset=16 (local.get $p) (local.get $v))
 *       (v128.store offset=32 (local.get $p) (local.get $v)) (v128.store offset=48 (local.get $p) (local.get $v))
 *       (local.set $p (i32.add (local.get $p) (i32.const 64)))
 *       (br $next))))
 */

const BYTES_PER_ELEMENT = 24
const MIB = 2 ** 20

const SEQUENTIAL_WASM =
  'AGFzbQEAAAABCwJgAX8Bf2ACf38AAg8BA2VudgZtZW1vcnkCAAEDAwIAAQcQAgRyZWFkAAAFd3JpdGUAAQqMAQJGAgF/AXsCQANAIAEgAE8NASACIAH9AAQA/VAgAf0ABBD9UCAB/QAEIP1QIAH9AAQw/VAhAiABQcAAaiEBDAALCyAC/RsAC0MCAX8BeyAB/REhAwJAA0AgAiAATw0BIAIgA/0LBAAgAiAD/QsEECACIAP9CwQgIAIgA/0LBDAgAkHAAGohAgwACwsL'

/** The part of the WebAssembly global used here (this project's TypeScript lib has no WebAssembly types). */
interface WebAssemblyApi {
  Memory: new (descriptor: {initial: number}) => object
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => {exports: object}
}
const {WebAssembly: wasm} = globalThis as unknown as {WebAssembly: WebAssemblyApi}

export interface SequentialRun {
  /** Mean over the passes, as sysbench reports (bytes moved / time). */
  read_mib_per_second: number
  write_mib_per_second: number
  block_mib: number
}

/** Sequential read passes, then write passes, over one block of `blockMib` MiB, each for about `durationMs`. */
export function measureSequential(options: {blockMib: number; durationMs: number}): SequentialRun {
  const bytes = options.blockMib * MIB
  const memory = new wasm.Memory({initial: bytes / 65_536})
  const exports = new wasm.Instance(new wasm.Module(Buffer.from(SEQUENTIAL_WASM, 'base64')), {env: {memory}}).exports as {
    read: (bytes: number) => number
    write: (bytes: number, value: number) => void
  }
  // Also faults the pages in and compiles both functions before anything is timed.
  exports.write(bytes, 0x0102_0304)
  if (exports.read(bytes) !== 0x0102_0304) throw new Error('the sequential memory kernel read back a wrong value')
  const rate = (pass: () => void) => {
    let passes = 0
    const start = performance.now()
    let elapsed = 0
    do {
      pass()
      passes++
      elapsed = performance.now() - start
    } while (elapsed < options.durationMs || passes < 3)
    return (passes * bytes) / MIB / (elapsed / 1000)
  }
  return {
    read_mib_per_second: rate(() => exports.read(bytes)),
    write_mib_per_second: rate(() => exports.write(bytes, 7)),
    block_mib: options.blockMib,
  }
}

export interface MemoryRun {
  triad_mib_per_second: number
  /** The mean over all timed passes, beside the best. */
  triad_mean_mib_per_second: number
  array_mib: number
  passes: number
}

export function measureMemory(options: {elements: number; durationMs: number}): MemoryRun {
  const {elements} = options
  const a = new Float64Array(elements)
  const b = new Float64Array(elements).fill(1)
  const c = new Float64Array(elements).fill(2)
  const scalar = 3
  const triad = () => {
    for (let index = 0; index < elements; index++) a[index] = (b[index] as number) + scalar * (c[index] as number)
  }
  // The first pass faults the pages in and lets the JIT compile the loop; it is not counted.
  triad()
  let best = Infinity
  let total = 0
  let passes = 0
  do {
    const start = performance.now()
    triad()
    const elapsed = performance.now() - start
    best = Math.min(best, elapsed)
    total += elapsed
    passes++
  } while (total < options.durationMs || passes < 3)
  if (a[elements - 1] !== 7) throw new Error('the triad kernel computed a wrong value')
  const bytes = elements * BYTES_PER_ELEMENT
  return {
    triad_mib_per_second: bytes / MIB / (best / 1000),
    triad_mean_mib_per_second: (bytes * passes) / MIB / (total / 1000),
    array_mib: (elements * 8) / MIB,
    passes,
  }
}
