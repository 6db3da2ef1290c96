/**
 * Memory bandwidth, STREAM's triad: a[i] = b[i] + s * c[i] over three large Float64Arrays. Bytes are counted as
 * STREAM counts them, 24 per element (two reads, one write), and the best pass is reported, as STREAM does.
 */

export interface MemoryRun {
  triad_mib_per_second: number
  /** The mean over all timed passes, beside the best. */
  triad_mean_mib_per_second: number
  array_mib: number
  passes: number
}

const BYTES_PER_ELEMENT = 24
const MIB = 2 ** 20

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
