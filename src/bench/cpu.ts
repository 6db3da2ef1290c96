import {availableParallelism} from 'node:os'
import {Worker} from 'node:worker_threads'

/**
 * The CPU kernel: one event checks every number below PRIME_LIMIT for primality by trial division up to its square
 * root, the definition `sysbench cpu` uses (cpu-max-prime 10000), so its events per second can be set beside
 * sysbench's. Each worker thread runs it flat out; the worker source is plain JavaScript so the same code runs from
 * dist/, under tsx and under vitest.
 */
export const PRIME_LIMIT = 10_000

const WORKER_SOURCE = `
const {parentPort, workerData} = require('node:worker_threads')
const {limit, durationMs, warmupMs} = workerData
function event() {
  let primes = 0
  for (let candidate = 3; candidate < limit; candidate++) {
    const root = Math.sqrt(candidate)
    let divisor = 2
    for (; divisor <= root; divisor++) if (candidate % divisor === 0) break
    if (divisor > root) primes++
  }
  return primes
}
function runFor(ms) {
  let events = 0
  let primes = 0
  const start = performance.now()
  let elapsed = 0
  do {
    primes = event()
    events++
    elapsed = performance.now() - start
  } while (elapsed < ms)
  return {events, seconds: elapsed / 1000, primes}
}
runFor(warmupMs)
parentPort.postMessage({ready: true})
parentPort.once('message', () => parentPort.postMessage(runFor(durationMs)))
`

export interface CpuRun {
  threads: number
  events_per_second: number
  /** Primes found by one event: the same on every machine (1228 below 10000, counting from 3). */
  primes_per_event: number
}

interface WorkerResult {
  events: number
  seconds: number
  primes: number
}

function isWorkerResult(value: unknown): value is WorkerResult {
  return typeof value === 'object' && value !== null && 'events' in value && 'seconds' in value && 'primes' in value
}

/** Runs the kernel on `threads` worker threads at once, started together after a warm-up; sums their rates. */
export async function measureCpu(options: {threads: number; durationMs: number}): Promise<CpuRun> {
  const warmupMs = Math.min(300, Math.max(20, options.durationMs / 10))
  const workers = Array.from({length: options.threads}, () => new Worker(WORKER_SOURCE, {eval: true, workerData: {limit: PRIME_LIMIT, durationMs: options.durationMs, warmupMs}}))
  try {
    const failed = new Promise<never>((_, reject) => {
      for (const worker of workers) worker.once('error', reject)
    })
    const message = (worker: Worker) => new Promise<unknown>((resolve) => worker.once('message', resolve))
    await Promise.race([Promise.all(workers.map(message)), failed])
    const results = Promise.all(workers.map(message))
    for (const worker of workers) worker.postMessage('go')
    const answers = await Promise.race([results, failed])
    const runs = answers.filter(isWorkerResult)
    if (runs.length !== workers.length) throw new Error('a CPU benchmark worker answered with something else')
    return {
      threads: options.threads,
      events_per_second: runs.reduce((sum, run) => sum + run.events / run.seconds, 0),
      primes_per_event: runs[0]?.primes ?? 0,
    }
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()))
  }
}

export function allCores(): number {
  return availableParallelism()
}
