/**
 * Seeded sampling of measurement outcomes. The generator is xoshiro128** (Blackman and Vigna) seeded with
 * SplitMix32 from the job's seed, so the same circuit, shots and seed give the same counts on every machine.
 */

function splitMix32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** A generator of uniform doubles in [0, 1) with 53 random bits, from a seed up to 2^53. */
export function seededRandom(seed: number): () => number {
  const low = splitMix32(seed % 2 ** 32)
  const high = splitMix32(Math.floor(seed / 2 ** 32) ^ 0x5bd1e995)
  const s = [low() ^ high(), low() ^ high(), low() ^ high(), low() ^ high()].map((word) => word >>> 0) as [number, number, number, number]
  if (s.every((word) => word === 0)) s[0] = 1
  const next = (): number => {
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0
    const t = (s[1] << 9) >>> 0
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] = (s[2] ^ t) >>> 0
    s[3] = rotl(s[3], 11)
    return result
  }
  return () => ((next() >>> 5) * 2 ** 26 + (next() >>> 6)) / 2 ** 53
}

function rotl(value: number, bits: number): number {
  return ((value << bits) | (value >>> (32 - bits))) >>> 0
}

/** How many times each basis state (an index into the probabilities) came up in `shots` draws. */
export function sampleIndices(probabilities: Float64Array, shots: number, random: () => number): Map<number, number> {
  const cumulative = new Float64Array(probabilities.length)
  let total = 0
  for (let index = 0; index < probabilities.length; index++) {
    total += probabilities[index] ?? 0
    cumulative[index] = total
  }
  const counts = new Map<number, number>()
  for (let shot = 0; shot < shots; shot++) {
    const target = random() * total
    // The first index whose cumulative probability exceeds the draw: states of probability 0 are never chosen.
    let low = 0
    let high = cumulative.length - 1
    while (low < high) {
      const middle = (low + high) >>> 1
      if ((cumulative[middle] ?? 0) > target) high = middle
      else low = middle + 1
    }
    counts.set(low, (counts.get(low) ?? 0) + 1)
  }
  return counts
}

/**
 * The counts as §12 bitstrings. A circuit that measures reports its classical bits, c[m-1]…c[0] over all cregs in
 * declaration order (a bit no measurement wrote reads 0), as OpenQASM defines the outcome; a circuit without a
 * measurement reports every qubit, q[n-1]…q[0]. Bit i of a basis index is qubit i.
 */
export function countsAsBitstrings(indices: Map<number, number>, shape: {qubits: number; clbits: number; measurements: Map<number, number>}): Record<string, number> {
  const counts: Record<string, number> = {}
  const measured = shape.measurements.size > 0
  for (const [index, count] of indices) {
    let bits = ''
    if (measured) {
      for (let clbit = shape.clbits - 1; clbit >= 0; clbit--) {
        const qubit = shape.measurements.get(clbit)
        bits += qubit === undefined ? '0' : bit(index, qubit)
      }
    } else {
      for (let qubit = shape.qubits - 1; qubit >= 0; qubit--) bits += bit(index, qubit)
    }
    counts[bits] = (counts[bits] ?? 0) + count
  }
  return counts
}

function bit(index: number, position: number): string {
  return Math.floor(index / 2 ** position) % 2 === 1 ? '1' : '0'
}
