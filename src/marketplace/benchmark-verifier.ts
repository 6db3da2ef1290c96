import {parentPort} from 'node:worker_threads'

import {computeWorkDigest} from '../core/benchmark-workload.js'

/**
 * The worker thread behind §9 verification: it re-runs the seeded workload (100k SHA-256 steps) so that the
 * server's event loop goes on answering while a report is checked. Messages come only from BenchmarkBook.
 */
parentPort?.on('message', (message: {id: number; seed: string}) => {
  try {
    parentPort?.postMessage({id: message.id, digest: computeWorkDigest(message.seed)})
  } catch (error) {
    parentPort?.postMessage({id: message.id, error: error instanceof Error ? error.message : String(error)})
  }
})
