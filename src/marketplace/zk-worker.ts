import {createRequire} from 'node:module'
import {Worker} from 'node:worker_threads'

/**
 * snarkjs off the event loop: one worker thread, started on first use, that verifies Groth16 proofs (BN254) and
 * computes a circuit's public signals from its witness (for zk_proof traps). The source is plain JavaScript so the
 * same code runs from dist/, under tsx and under vitest. snarkjs's web-worker dependency decides at load time, from
 * `isMainThread`, whether it is one of its own threads; inside this worker that answer must be "main", or loading
 * snarkjs fails. The worker keeps the BN254 curve (and its threads) between calls: the first call pays for building it.
 */
const WORKER_SOURCE = `
const threads = require('node:worker_threads')
const {parentPort, workerData} = threads
Object.defineProperty(threads, 'isMainThread', {value: true})
const snarkjs = require(workerData.snarkjs)
async function answer(message) {
  if (message.op === 'warm') {
    await snarkjs.curves.getCurveFromName('bn128')
    return {ok: true}
  }
  if (message.op === 'verify') {
    try {
      return {ok: true, valid: (await snarkjs.groth16.verify(message.vkey, message.publicSignals, message.proof)) === true}
    } catch (error) {
      return {ok: true, valid: false, error: String(error && error.message || error)}
    }
  }
  if (message.op === 'public-signals') {
    const witness = {type: 'mem'}
    await snarkjs.wtns.calculate(message.input, {type: 'mem', data: message.wasm}, witness)
    const values = await snarkjs.wtns.exportJson(witness)
    return {ok: true, publicSignals: values.slice(1, 1 + message.nPublic).map(String)}
  }
  return {ok: false, error: 'unknown operation ' + message.op}
}
parentPort.on('message', (message) => {
  answer(message).then(
    (reply) => parentPort.postMessage({id: message.id, ...reply}),
    (error) => parentPort.postMessage({id: message.id, ok: false, error: String(error && error.message || error)}),
  )
})
`

// A verification that takes longer than this is the worker's failure, not the provider's: the result stays submitted.
const CALL_TIMEOUT_MS = 120_000

interface Reply {
  id: number
  ok: boolean
  valid?: boolean
  publicSignals?: string[]
  error?: string
}

export class ZkWorker {
  private worker: Worker | undefined
  private nextId = 0
  private readonly pending = new Map<number, {resolve: (reply: Reply) => void; reject: (error: Error) => void; timer: NodeJS.Timeout}>()

  /** Builds the curve ahead of the first proof, so the first result isn't the one that waits for it. */
  warm(): void {
    this.call({op: 'warm'}).catch(() => undefined)
  }

  /** Groth16 verification; a proof snarkjs can't even read is simply not valid. */
  async verify(vkey: unknown, publicSignals: readonly string[], proof: unknown): Promise<boolean> {
    const reply = await this.call({op: 'verify', vkey, publicSignals, proof})
    return reply.valid === true
  }

  /** The circuit's public signals (outputs, then public inputs) for an input, from its witness: no proving needed. */
  async publicSignals(wasm: Uint8Array, input: unknown, nPublic: number): Promise<string[]> {
    const reply = await this.call({op: 'public-signals', wasm, input, nPublic})
    if (!reply.publicSignals) throw new Error('the witness worker answered without public signals')
    return reply.publicSignals
  }

  async close(): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    this.failAll(new Error('the proof worker was stopped'))
    await worker?.terminate()
  }

  private start(): Worker {
    const snarkjs = createRequire(import.meta.url).resolve('snarkjs')
    const worker = new Worker(WORKER_SOURCE, {eval: true, workerData: {snarkjs}})
    worker.unref()
    worker.on('message', (reply: Reply) => {
      const waiting = this.pending.get(reply.id)
      if (!waiting) return
      this.pending.delete(reply.id)
      clearTimeout(waiting.timer)
      if (reply.ok) waiting.resolve(reply)
      else waiting.reject(new Error(`proof worker: ${reply.error ?? 'failed'}`))
    })
    const lost = (error: Error) => {
      if (this.worker === worker) this.worker = undefined
      this.failAll(error)
    }
    worker.on('error', lost)
    worker.on('exit', (code) => lost(new Error(`the proof worker exited (${code})`)))
    return worker
  }

  private call(message: Record<string, unknown>): Promise<Reply> {
    this.worker ??= this.start()
    const worker = this.worker
    const id = ++this.nextId
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`the proof worker did not answer within ${CALL_TIMEOUT_MS / 1000} s`))
      }, CALL_TIMEOUT_MS)
      timer.unref()
      this.pending.set(id, {resolve, reject, timer})
      worker.postMessage({...message, id})
    })
  }

  private failAll(error: Error): void {
    for (const [id, waiting] of this.pending) {
      clearTimeout(waiting.timer)
      waiting.reject(error)
      this.pending.delete(id)
    }
  }
}
