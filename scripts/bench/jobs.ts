import {mkdtempSync, rmSync} from 'node:fs'
import {createHash} from 'node:crypto'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {ExecutorJob, JobKind} from '../../src/executors/executor.js'
import {denseCircuit, QasmSimulatorExecutor} from '../../src/executors/qasm/qasm-simulator-executor.js'
import {multiplierExample} from '../../src/executors/snarkjs/program.js'
import {SnarkjsExecutor} from '../../src/executors/snarkjs/snarkjs-executor.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import type {BenchRow, BenchSection} from './types.js'

const ZK_ROUNDS = 5
const WIDTHS = [8, 10, 12, 14]
const never = new AbortController().signal

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
}

function job(kind: JobKind, program: Buffer): ExecutorJob {
  const digest = createHash('sha256').update(program).digest('hex')
  return {job_id: `bench-${digest.slice(0, 8)}`, kind, program: {digest, size_bytes: program.length}, input: {digest, size_bytes: 0}, resources: {cpu_cores: 1, memory_mb: 1024, gpu_count: 0}, deadline: Date.now() + 3_600_000}
}

/**
 * The executors on this machine: the zk example's proving time and proofs per minute, the run-time estimate the
 * deadline filter would use for it (the size model, from calibrations interleaved with the measured runs) against the
 * measured time (issue 19: within 25 %), and the simulator's time per circuit width (dense circuits, depth 20).
 */
export const jobsBench: BenchSection = async () => {
  const workDir = mkdtempSync(join(tmpdir(), 'outpost-bench-jobs-'))
  const rows: BenchRow[] = []
  try {
    const example = multiplierExample()
    const zkJob = job('zk_proof', example.program)
    const calibrated = new SnarkjsExecutor(new SpeedBook())
    const prover = new SnarkjsExecutor(new SpeedBook())
    const proveMs: number[] = []
    const executorMs: number[] = []
    for (let round = 0; round < ZK_ROUNDS; round++) {
      await calibrated.calibrate(never)
      const outcome = await prover.run({job: zkJob, ...example, workDir, signal: never})
      executorMs.push(outcome.executorMs)
      proveMs.push((outcome.measured.witness_ms ?? 0) + (outcome.measured.prove_ms ?? 0))
    }
    const measured = median(executorMs)
    const estimate = ((await calibrated.estimate({job: zkJob, program: example.program}))?.seconds ?? NaN) * 1000
    rows.push(
      {group: 'jobs', name: `zk example: executor time (median of ${ZK_ROUNDS})`, value: Math.round(measured), unit: 'ms', note: 'process start, witness, proof, local verification'},
      {group: 'jobs', name: 'zk example: witness + proof', value: Math.round(median(proveMs)), unit: 'ms'},
      {group: 'jobs', name: 'zk example: proofs per minute, one at a time', value: Math.round(60_000 / measured), unit: '/min'},
      {group: 'jobs', name: 'zk estimate vs measured (size model: what the auction deadline filter uses)', value: Math.round(estimate), unit: 'ms', ratio: estimate / measured, note: `measured ${Math.round(measured)} ms; goal: ratio 0.75–1.25 (within 25 %)`},
    )

    const simulator = new QasmSimulatorExecutor({max_width: 16, max_shots: 1_000_000, max_gates: 100_000, heap_mb: 2048}, new SpeedBook())
    try {
      // The first run loads the library in the worker; it is not a width's cost.
      const warm = Buffer.from(denseCircuit(4, 2))
      await simulator.run({job: job('quantum_circuit', warm), program: warm, input: Buffer.from('{"shots": 1, "seed": 1}'), workDir, signal: never})
      for (const width of WIDTHS) {
        const program = Buffer.from(denseCircuit(width, 20))
        const outcome = await simulator.run({job: job('quantum_circuit', program), program, input: Buffer.from('{"shots": 1000, "seed": 1}'), workDir, signal: never})
        rows.push({group: 'jobs', name: `qasm simulator: width ${width}, depth 20, ${outcome.measured.gates} gates`, value: Math.round(outcome.measured.simulate_ms ?? 0), unit: 'ms'})
      }
    } finally {
      await simulator.close()
    }
  } finally {
    rmSync(workDir, {recursive: true, force: true})
  }
  return rows
}
