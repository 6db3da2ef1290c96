import {createHash} from 'node:crypto'

import {isHex} from './hex.js'

/**
 * PROTOCOL §9: the seeded CPU workload behind `work_digest`. A SHA-256 chain from the challenge seed: each step
 * hashes the previous digest, so it can't be parallelised or skipped, and the marketplace re-runs it in a few
 * hundred milliseconds to check a report. The agent's benchmark runs the same function.
 */
export const WORKLOAD_ITERATIONS = 100_000

/** The lowercase hex digest the seeded workload ends on; throws RangeError on a seed that isn't 32 bytes of hex. */
export function computeWorkDigest(seedHex: string): string {
  if (!isHex(seedHex, 32)) throw new RangeError('a benchmark seed is 32 bytes of lowercase hex')
  let state: Buffer = Buffer.from(seedHex, 'hex')
  for (let step = 0; step < WORKLOAD_ITERATIONS; step++) state = createHash('sha256').update(state).digest()
  return state.toString('hex')
}
