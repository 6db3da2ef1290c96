import {availableParallelism} from 'node:os'
import {Worker} from 'node:worker_threads'

/**
 * The CPU kernel: one event checks every number below PRIME_LIMIT for primality by trial division up to its square
 * root, the event `sysbench cpu` runs (cpu-max-prime 10000), with sysbench's arithmetic: 64-bit unsigned integers
 * (`c % l` is a 64-bit division, the instruction that dominates) compared with the double square root. JavaScript
 * would divide 32-bit integers (about 1.2-1.3 × sysbench's rate here), so the event is WebAssembly, whose i64.rem_u
 * is the same machine division. Its source (WAT), assembled by hand into PRIME_EVENT_WASM:
 *
 *   (func (export "event") (param $limit i64) (result i32) (local $c i64) (local $l i64) (local $t f64) (local $n i32)
 *     (local.set $c (i64.const 3))
 *     (block $done (loop $outer
 *       (br_if $done (i64.ge_u (local.get $c) (local.get $limit)))
 *       (local.set $t (f64.sqrt (f64.convert_i64_u (local.get $c))))
 *       (local.set $l (i64.const 2))
 *       (block $break (loop $inner
 *         (br_if $break (f64.gt (f64.convert_i64_u (local.get $l)) (local.get $t)))
 *         (br_if $break (i64.eqz (i64.rem_u (local.get $c) (local.get $l))))
 *         (local.set $l (i64.add (local.get $l) (i64.const 1)))
 *         (br $inner)))
 *       (if (f64.gt (f64.convert_i64_u (local.get $l)) (local.get $t)) (then (local.set $n (i32.add (local.get $n) (i32.const 1)))))
 *       (local.set $c (i64.add (local.get $c) (i64.const 1)))
 *       (br $outer)))
 *     (local.get $n))
 *
 * Each worker thread runs it flat out; the worker source is plain JavaScript so the same code runs from dist/, under
 * tsx and under vitest.
 */
export const PRIME_LIMIT = 10_000

const PRIME_EVENT_WASM =
  'AGFzbQEAAAABBgFgAX4BfwMCAQAHCQEFZXZlbnQAAApfAV0DAn4BfAF/QgMhAQJAA0AgASAAWg0BIAG6nyEDQgIhAgJAA0AgArogA2QNASABIAKCUA0BIAJCAXwhAgwACwsgArogA2QEQCAEQQFqIQQLIAFCAXwhAQwACwsgBAs='

const WORKER_SOURCE = `
const {parentPort, workerData} = require('node:worker_threads')
const {limit, durationMs, warmupMs, wasm} = workerData
const {event} = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(wasm, 'base64'))).exports
const bigLimit = BigInt(limit)
function runFor(ms) {
  let events = 0
  let primes = 0
  const start = performance.now()
  let elapsed = 0
  do {
    primes = event(bigLimit)
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
  const workers = Array.from({length: options.threads}, () => new Worker(WORKER_SOURCE, {eval: true, workerData: {limit: PRIME_LIMIT, durationMs: options.durationMs, warmupMs, wasm: PRIME_EVENT_WASM}}))
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
