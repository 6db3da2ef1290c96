import {createRequire} from 'node:module'
import {z} from 'zod'

import {
  ExecutorError,
  parseJobBytes,
  throwIfAborted,
  type EstimateRequest,
  type Executor,
  type JobOutcome,
  type JobRun,
  type RunEstimate,
  type SetupCheck,
} from '../executor.js'
import type {SpeedBook} from '../speed-book.js'
import {analyzeCircuit, type CircuitShape} from './qasm.js'
import {countsAsBitstrings, sampleIndices, seededRandom} from './sampling.js'
import {SimulatorPool} from './simulate.js'

export interface QasmSimulatorSettings {
  /** Widest circuit run; wider ones are refused as retryable (another provider may run them). */
  max_width: number
  max_shots: number
  max_gates: number
  /** Heap of each simulator worker. */
  heap_mb: number
}

/** The `quantum_circuit` input (§12). */
export const QuantumInput = z.looseObject({
  shots: z.number().int().positive(),
  seed: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
})

/**
 * Besides its pass over the state, each gate costs the library about as much as updating this many amplitudes
 * (measured here: 3 ms a gate at 8 to 14 qubits on top of about 1 µs per amplitude).
 */
const GATE_OVERHEAD_AMPLITUDES = 2048

/**
 * OpenQASM 2.0 on a state-vector simulator (the `quantum-circuit` library), for `quantum_circuit` jobs. The library
 * computes the final state; the shots are drawn from its probabilities with a generator seeded by the job's seed (the
 * library itself would use Math.random), so a job's counts can be reproduced. Measurements must be terminal: the
 * outcome of a measurement that later gates depend on can't come from the final state.
 *
 * Estimates: the library's cost is a pass over the state per gate, so the machine model's units are gates ×
 * (2^width + a per-gate overhead), plus one per shot, measured on this machine by calibrate() (a dense 12-qubit
 * circuit) and by dense runs since. A sparse state (GHZ, basis states) runs much faster than its size says, so it teaches the model nothing
 * and the estimate stays an upper bound for it.
 */
export class QasmSimulatorExecutor implements Executor {
  readonly type = 'qasm-simulator'
  readonly kinds = ['quantum_circuit'] as const
  private readonly pool: SimulatorPool

  constructor(
    private readonly settings: QasmSimulatorSettings,
    private readonly speed: SpeedBook,
  ) {
    this.pool = new SimulatorPool(settings.heap_mb)
  }

  async run(run: JobRun): Promise<JobOutcome> {
    const started = performance.now()
    throwIfAborted(run.signal, `simulating job ${run.job.job_id}`)
    const shape = this.shape(run.program)
    const input = parseJobBytes(QuantumInput, run.input, 'input')
    if (input.shots > this.settings.max_shots) throw new ExecutorError('too_large', `${input.shots} shots; this simulator takes up to ${this.settings.max_shots}`, {retryable: true})
    const simulation = await this.pool.simulate(shape.unitary, shape.qubits, run.signal)
    const sampling = performance.now()
    const counts = countsAsBitstrings(sampleIndices(simulation.probabilities, input.shots, seededRandom(input.seed)), shape)
    const samplingMs = performance.now() - sampling
    const executorMs = performance.now() - started
    const variableMs = simulation.simulate_ms + samplingMs
    const units = work(shape, input.shots)
    this.speed.record(this.type, run.job.program.digest, executorMs, isDense(simulation.probabilities, shape.qubits) ? {fixedMs: executorMs - variableMs, variableMs, units} : undefined)
    return {
      output: Buffer.from(JSON.stringify({counts})),
      executorMs,
      measured: {load_ms: simulation.load_ms, simulate_ms: simulation.simulate_ms, sampling_ms: samplingMs, width: shape.qubits, depth: shape.depth, gates: shape.gates, shots: input.shots},
    }
  }

  async estimate(request: EstimateRequest): Promise<RunEstimate | undefined> {
    let shape: CircuitShape | undefined
    let shots = 0
    try {
      shape = this.shape(request.program)
      if (request.input) shots = parseJobBytes(QuantumInput, request.input, 'input').shots
    } catch (error) {
      if (!(error instanceof ExecutorError)) throw error
    }
    return this.speed.estimate({
      type: this.type,
      programDigest: request.job.program.digest,
      ...(shape ? {units: work(shape, shots), describeUnits: `width ${shape.qubits}, ${shape.gates} gates (depth ${shape.depth}), ${shots} shots`} : {}),
    })
  }

  /** Simulates a dense 12-qubit circuit of depth 20 and records the machine model it measures. */
  async calibrate(signal: AbortSignal): Promise<void> {
    const shape = this.shape(Buffer.from(denseCircuit(12, 20)))
    const started = performance.now()
    const simulation = await this.pool.simulate(shape.unitary, shape.qubits, signal)
    const totalMs = performance.now() - started
    this.speed.recordCalibration(this.type, {fixedMs: totalMs - simulation.simulate_ms, variableMs: simulation.simulate_ms, units: work(shape, 0)})
  }

  async verifySetup(): Promise<SetupCheck[]> {
    try {
      return [{name: 'qasm simulator', ok: true, message: `quantum-circuit is installed (${createRequire(import.meta.url).resolve('quantum-circuit')}); circuits up to ${this.settings.max_width} qubits`}]
    } catch (error) {
      return [{name: 'qasm simulator', ok: false, message: `quantum-circuit is not installed: ${error instanceof Error ? error.message : String(error)}`, remedy: 'reinstall outpost'}]
    }
  }

  async close(): Promise<void> {
    await this.pool.close()
  }

  private shape(program: Buffer): CircuitShape {
    return analyzeCircuit(program.toString('utf8'), {maxWidth: this.settings.max_width, maxGates: this.settings.max_gates})
  }
}

/** Amplitude updates: each gate passes over the state, plus its own overhead; one more per shot drawn. */
function work(shape: CircuitShape, shots: number): number {
  return shape.gates * (2 ** shape.qubits + GATE_OVERHEAD_AMPLITUDES) + shots
}

/** At least half the amplitudes are non-zero: the library did the full work its size implies. */
function isDense(probabilities: Float64Array, qubits: number): boolean {
  let nonZero = 0
  for (const probability of probabilities) if (probability > 0) nonZero++
  return nonZero * 2 >= 2 ** qubits
}

/**
 * A circuit whose state is dense from the first layer: Hadamards on every qubit, then alternating layers of
 * rotations and CNOTs with fixed angles (deterministic, so every machine calibrates on the same work).
 */
export function denseCircuit(width: number, depth: number): string {
  const lines = ['OPENQASM 2.0;', 'include "qelib1.inc";', `qreg q[${width}];`]
  for (let qubit = 0; qubit < width; qubit++) lines.push(`h q[${qubit}];`)
  for (let layer = 0; layer < depth; layer++) {
    for (let qubit = 0; qubit + 1 < width; qubit += 2) {
      const a = (qubit + layer) % width
      const b = (qubit + layer + 1) % width
      if (layer % 2 === 1) lines.push(`cx q[${a}],q[${b}];`)
      else lines.push(`u3(${(0.1 * (a + 1)).toFixed(1)},${(0.2 * (layer + 1)).toFixed(1)},0) q[${a}];`, `rz(${(0.3 * (b + 1)).toFixed(1)}) q[${b}];`)
    }
  }
  return lines.join('\n') + '\n'
}
