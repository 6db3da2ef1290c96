import {createRequire} from 'node:module'
import {Worker} from 'node:worker_threads'
import {z} from 'zod'

import {ExecutorAbortedError, ExecutorError} from '../executor.js'

/**
 * Simulations run in worker threads, so a circuit that takes seconds leaves the agent's event loop free and the
 * deadline can stop it (terminate() interrupts running JavaScript). Loading the library takes a second or two, so a
 * worker is kept for the next job once it has answered; one that was stopped or failed is not reused. A worker returns
 * the final state's probabilities (|amplitude|²) as a Float64Array, transferred rather than copied. The library
 * shrinks a circuit to its highest used qubit, so the array may be shorter than 2^width: the missing qubits are |0⟩.
 * The workers' stdio is not piped: a piped stream keeps the process alive even when the worker is unref'd.
 */
const WORKER_SOURCE = `
const {parentPort, workerData} = require('node:worker_threads')
// The library's parser warns about circular imports on load; the agent's output is no place for that.
process.emitWarning = () => undefined
const started = performance.now()
const QuantumCircuit = require(workerData.libraryPath)
let loadMs = performance.now() - started
parentPort.on('message', (qasm) => {
  try {
    const circuit = new QuantumCircuit()
    let errors = []
    circuit.importQASM(qasm, (found) => { errors = found || [] })
    if (errors.length > 0) {
      parentPort.postMessage({ok: false, phase: 'import', message: errors.map((e) => 'line ' + e.line + ':' + e.col + ' ' + e.msg).join('; ')})
      return
    }
    // The importer keeps a gate it doesn't know, and running it would skip it: a wrong answer, not an error.
    for (const wire of circuit.gates) {
      for (const gate of wire) {
        if (gate && !circuit.basicGates[gate.name] && !circuit.customGates[gate.name]) {
          parentPort.postMessage({ok: false, phase: 'import', message: 'unknown gate ' + gate.name})
          return
        }
      }
    }
    const simulating = performance.now()
    circuit.run()
    const state = circuit.stateAsSimpleArray()
    const probabilities = new Float64Array(state.length)
    for (let i = 0; i < state.length; i++) {
      const a = state[i]
      probabilities[i] = typeof a === 'number' ? a * a : a.re * a.re + a.im * a.im
    }
    parentPort.postMessage({ok: true, probabilities, load_ms: loadMs, simulate_ms: performance.now() - simulating}, [probabilities.buffer])
    loadMs = 0
  } catch (error) {
    parentPort.postMessage({ok: false, phase: 'run', message: String(error && error.message ? error.message : error)})
  }
})
`

const SimulationResult = z.discriminatedUnion('ok', [
  z.object({ok: z.literal(true), probabilities: z.instanceof(Float64Array), load_ms: z.number(), simulate_ms: z.number()}),
  z.object({ok: z.literal(false), phase: z.enum(['import', 'run']), message: z.string()}),
])
export type Simulation = Extract<z.infer<typeof SimulationResult>, {ok: true}>

export class SimulatorPool {
  private readonly idle: Worker[] = []

  constructor(private readonly heapMb: number) {}

  async simulate(qasm: string, qubits: number, signal: AbortSignal): Promise<Simulation> {
    if (signal.aborted) throw new ExecutorAbortedError('simulating', {cause: signal.reason})
    const worker = this.idle.pop() ?? this.start()
    worker.ref()
    const stop = () => void worker.terminate()
    signal.addEventListener('abort', stop, {once: true})
    let reusable = false
    try {
      const result = await answer(worker)
      if (!result.ok) {
        reusable = true
        // The library refusing what the statement reader accepted is a gate it doesn't know, or a library fault.
        if (result.phase === 'import') throw new ExecutorError('bad_program', `the simulator cannot read the circuit: ${result.message}`, {retryable: false})
        throw new ExecutorError('executor_failed', `the simulation failed: ${result.message}`, {retryable: true})
      }
      const expected = 2 ** qubits
      if (result.probabilities.length > expected || expected % result.probabilities.length !== 0) {
        throw new ExecutorError('executor_failed', `the simulator returned ${result.probabilities.length} probabilities for ${qubits} qubits`, {retryable: true})
      }
      reusable = true
      return result
    } catch (error) {
      if (signal.aborted) throw new ExecutorAbortedError('simulating', {cause: signal.reason})
      if (error instanceof ExecutorError) throw error
      const outOfMemory = (error as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY'
      throw new ExecutorError(outOfMemory ? 'too_large' : 'executor_failed', outOfMemory ? `the simulation needs more than ${this.heapMb} MB` : `the simulator failed: ${error instanceof Error ? error.message : String(error)}`, {
        retryable: true,
        cause: error,
      })
    } finally {
      signal.removeEventListener('abort', stop)
      if (reusable && !signal.aborted) {
        // An idle worker must not keep the agent's process alive.
        worker.unref()
        this.idle.push(worker)
      } else {
        await worker.terminate()
      }
    }

    function answer(worker: Worker): Promise<z.infer<typeof SimulationResult>> {
      return new Promise((resolve, reject) => {
        const cleanUp = () => {
          worker.off('message', onMessage)
          worker.off('error', onError)
          worker.off('exit', onExit)
        }
        const onMessage = (message: unknown) => {
          cleanUp()
          const parsed = SimulationResult.safeParse(message)
          if (parsed.success) resolve(parsed.data)
          else reject(new ExecutorError('executor_failed', 'the simulator returned something unreadable', {retryable: true}))
        }
        const onError = (error: Error) => {
          cleanUp()
          reject(error)
        }
        const onExit = (code: number) => {
          cleanUp()
          reject(new Error(`the simulator stopped (exit code ${code}) without a result`))
        }
        worker.on('message', onMessage)
        worker.on('error', onError)
        worker.on('exit', onExit)
        worker.postMessage(qasm)
      })
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.idle.splice(0).map((worker) => worker.terminate()))
  }

  private start(): Worker {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {libraryPath: createRequire(import.meta.url).resolve('quantum-circuit')},
      resourceLimits: {maxOldGenerationSizeMb: this.heapMb},
    })
    // A worker that dies while idle leaves the pool; its error is read by the run that was using it, if any.
    worker.on('error', () => undefined)
    worker.once('exit', () => {
      const index = this.idle.indexOf(worker)
      if (index >= 0) this.idle.splice(index, 1)
    })
    return worker
  }
}
