import {readlinkSync} from 'node:fs'
import {setPriority} from 'node:os'
import {parentPort} from 'node:worker_threads'

import {computeWorkDigest} from '../core/benchmark-workload.js'

/**
 * The worker thread behind §9 verification: it re-runs the seeded workload (100k SHA-256 steps) so that the
 * server's event loop goes on answering while a report is checked. Messages come only from BenchmarkBook.
 */

/**
 * On Linux a thread has its own nice value: at the lowest priority, a verification takes only the CPU the server's
 * own thread leaves, so a flood of reports slows the reports, not every other request. Elsewhere (no
 * /proc/thread-self, or not allowed) the worker keeps the process's priority.
 */
function yieldToTheServer(): void {
  try {
    const threadId = Number(readlinkSync('/proc/thread-self').split('/').pop())
    if (Number.isInteger(threadId)) setPriority(threadId, 19)
  } catch {
    return
  }
}

yieldToTheServer()
parentPort?.on('message', (message: {id: number; seed: string}) => {
  try {
    parentPort?.postMessage({id: message.id, digest: computeWorkDigest(message.seed)})
  } catch (error) {
    parentPort?.postMessage({id: message.id, error: error instanceof Error ? error.message : String(error)})
  }
})
