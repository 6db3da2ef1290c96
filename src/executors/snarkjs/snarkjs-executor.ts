import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

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
import {CircuitInput, decodeProgram, multiplierExample, provingWork, type ZkeyHeader} from './program.js'
import {proveInChild, type ProveSuccess} from './prove.js'

/**
 * Groth16 proving of `snarkjs-groth16-v1` programs (§12 `zk_proof`): the witness from the program's wasm, the proof
 * with its zkey, checked against its verification key before it is returned (about 30 ms), so a proof this host got
 * wrong is never submitted. Each job gets a fresh child process: killed at the deadline, nothing kept between jobs.
 *
 * Estimates: a program run here before is expected to take what its runs took (a weighted mean); a new one is priced
 * by the machine model `fixed + rate × work`, where work comes from the zkey header (provingWork) and the fixed part
 * (process start, library load, curve set-up, verification) and the rate were measured on this machine, by
 * calibrate() (the built-in multiplier example) and by every run since.
 */
export class SnarkjsExecutor implements Executor {
  readonly type = 'snarkjs'
  readonly kinds = ['zk_proof'] as const

  constructor(private readonly speed: SpeedBook) {}

  async run(run: JobRun): Promise<JobOutcome> {
    const started = performance.now()
    throwIfAborted(run.signal, `proving job ${run.job.job_id}`)
    const program = decodeProgram(run.program)
    parseJobBytes(CircuitInput, run.input, 'input')
    const result = await proveInChild({...program, input: run.input}, run.workDir, run.signal)
    const executorMs = performance.now() - started
    this.speed.record(this.type, run.job.program.digest, executorMs, machineSample(result, executorMs, program.header))
    return {
      output: Buffer.from(JSON.stringify({proof: result.proof, public_signals: result.publicSignals})),
      executorMs,
      measured: {startup_ms: result.startup_ms, witness_ms: result.witness_ms, prove_ms: result.prove_ms, verify_ms: result.verify_ms, n_vars: program.header.nVars, domain_size: program.header.domainSize},
    }
  }

  async estimate(request: EstimateRequest): Promise<RunEstimate | undefined> {
    let header: ZkeyHeader | undefined
    try {
      header = decodeProgram(request.program).header
    } catch (error) {
      // A program that can't be read has no size; the run would fail at once, which the caller learns by running it.
      if (!(error instanceof ExecutorError)) throw error
    }
    return this.speed.estimate({
      type: this.type,
      programDigest: request.job.program.digest,
      ...(header ? {units: provingWork(header), describeUnits: `${header.nVars} variables, domain ${header.domainSize}`} : {}),
    })
  }

  /** Proves the multiplier example once and records the machine model it measures. */
  async calibrate(signal: AbortSignal): Promise<void> {
    const example = multiplierExample()
    const program = decodeProgram(example.program)
    const dir = await mkdtemp(join(tmpdir(), 'outpost-snarkjs-calibrate-'))
    try {
      const started = performance.now()
      const result = await proveInChild({...program, input: example.input}, dir, signal)
      this.speed.recordCalibration(this.type, machineSample(result, performance.now() - started, program.header))
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  }

  async verifySetup(): Promise<SetupCheck[]> {
    try {
      return [{name: 'snarkjs', ok: true, message: `snarkjs is installed (${import.meta.resolve('snarkjs')})`}]
    } catch (error) {
      return [{name: 'snarkjs', ok: false, message: `snarkjs is not installed: ${error instanceof Error ? error.message : String(error)}`, remedy: 'reinstall outpost (snarkjs is one of its dependencies)'}]
    }
  }
}

/** The witness and the proof grow with the circuit; everything else the run took is the fixed part. */
function machineSample(result: ProveSuccess, totalMs: number, header: ZkeyHeader) {
  const variableMs = result.witness_ms + result.prove_ms
  return {fixedMs: Math.max(0, totalMs - variableMs), variableMs, units: provingWork(header)}
}
