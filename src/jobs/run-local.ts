import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {LoadedConfig} from '../core/config/load.js'
import {ExitCode, UserError} from '../core/errors.js'
import {sha256Hex} from '../core/signing.js'
import {templatePath} from '../core/templates.js'
import {EXECUTOR_KINDS} from '../core/config/jobs.js'
import type {ExecutorType} from '../core/config/jobs.js'
import {ExecutorError, type Executor, type ExecutorJob, type JobKind, type JobOutcome, type RunEstimate} from '../executors/executor.js'
import {createExecutors, speedBookFile} from '../executors/index.js'
import {multiplierExample} from '../executors/snarkjs/program.js'
import {SpeedBook} from '../executors/speed-book.js'
import {runTasks, type ProgressMode, type Task} from '../ui/tasks.js'
import {TpmResultAttester} from '../attest/attest.js'

/**
 * `outpost jobs run-local`: one job through the executor `[jobs]` names for its kind, with no marketplace, so an
 * operator can check a setup (libraries, engine, speed) before leasing anything. The same steps as a leased job
 * (estimate, run, check the output), each a task of a list that later steps (an attestation) can join.
 */

export const LOCAL_EXAMPLES = ['multiplier', 'ghz'] as const
export type LocalExample = (typeof LOCAL_EXAMPLES)[number]

/** The built-in example of each kind that has one (templates/jobs/). */
export const EXAMPLE_OF_KIND: Partial<Record<JobKind, LocalExample>> = {zk_proof: 'multiplier', quantum_circuit: 'ghz'}

export interface LocalJob {
  kind: JobKind
  program: Buffer
  input: Buffer
  /** Where the job came from, for a person: `example multiplier`, or the two files. */
  source: string
}

export function exampleJob(example: LocalExample): LocalJob {
  if (example === 'multiplier') return {kind: 'zk_proof', ...multiplierExample(), source: 'example multiplier (templates/jobs/multiplier)'}
  return {
    kind: 'quantum_circuit',
    program: readFileSync(templatePath('jobs/ghz/ghz.qasm')),
    input: readFileSync(templatePath('jobs/ghz/input.json')),
    source: 'example ghz (templates/jobs/ghz)',
  }
}

function readJobFile(path: string, what: 'program' | 'input'): Buffer {
  if (!existsSync(path)) throw new UserError(`the ${what} file ${path} does not exist`, {code: 'file_missing', exit: ExitCode.usage, suggestion: `pass the path of the job's ${what} bytes, or --example ${LOCAL_EXAMPLES.join('|')}`})
  try {
    return readFileSync(path)
  } catch (error) {
    throw new UserError(`the ${what} file ${path} can't be read: ${(error as Error).message}`, {code: 'file_unreadable', exit: ExitCode.usage, suggestion: 'check the path and its permissions'})
  }
}

/** The kind a program's bytes say they are (§12's formats), or undefined. */
export function guessKind(program: Buffer): JobKind | undefined {
  const text = program.subarray(0, 4096).toString('utf8')
  if (/^\s*(\/\/[^\n]*\n\s*)*OPENQASM\s+2/.test(text)) return 'quantum_circuit'
  if (/"format"\s*:\s*"snarkjs-groth16-v1"/.test(text)) return 'zk_proof'
  if (/^\s*\{/.test(text) && /"image"\s*:/.test(text)) return 'container'
  return undefined
}

export function fileJob(programPath: string, inputPath: string, kind: JobKind | undefined): LocalJob {
  const program = readJobFile(programPath, 'program')
  const input = readJobFile(inputPath, 'input')
  const found = kind ?? guessKind(program)
  if (!found) {
    throw new UserError(`the kind of ${programPath} can't be told from its bytes`, {code: 'usage', exit: ExitCode.usage, suggestion: 'pass --kind zk_proof|quantum_circuit|container'})
  }
  return {kind: found, program, input, source: `${programPath} with ${inputPath}`}
}

export interface RunLocalOptions {
  loaded: LoadedConfig
  local: LocalJob
  /** The run is stopped after this long (its deadline, as a leased job's would be). */
  timeoutMs: number
  resources?: ExecutorJob['resources']
  signal?: AbortSignal
  /** Where the output bytes are written, when the operator wants to read them. */
  outputFile?: string
}

/** What the steps find, each adding to it. */
export interface RunLocalState {
  options: RunLocalOptions
  job: ExecutorJob
  executor: Executor
  workDir: string
  estimate?: RunEstimate
  outcome?: JobOutcome
  wallMs?: number
  startedAt?: number
  check?: string
  /** With [attestation] enabled: the quote's PCR digest, once the quote over the result verified. */
  attestation?: {pcr_digest: string}
}

export interface RunLocalResult {
  kind: JobKind
  source: string
  executor: ExecutorType
  /** Whether `outpost run` would lease jobs of this kind with this config. */
  served: boolean
  program: {digest: string; size_bytes: number}
  input: {digest: string; size_bytes: number}
  /** The executor's expected time before the run (from this machine's measured speed), if it had one. */
  estimate: RunEstimate | null
  executor_ms: number
  wall_ms: number
  /** executor_ms over the estimate: 1 is a perfect estimate. */
  estimate_ratio: number | null
  output: {digest: string; size_bytes: number}
  output_file: string | null
  check: string
  /** The quote's PCR digest when [attestation] is enabled (the quote verified against the recorded AK), else null. */
  attestation: {pcr_digest: string} | null
  measured: Record<string, number>
}

/** The executor `[jobs]` names for the kind, also for a kind not served yet (checking one before enabling it). */
export function executorFor(loaded: LoadedConfig, kind: JobKind, stateDir: string): Executor {
  const {jobs} = loaded.config
  const type = jobs.executor[kind]
  if (!EXECUTOR_KINDS[type].includes(kind)) {
    throw new UserError(`[jobs.executor] ${kind} = "${type}", and that executor does not run ${kind} jobs`, {code: 'config_invalid', exit: ExitCode.config, suggestion: `set ${kind} to one of: ${Object.entries(EXECUTOR_KINDS).filter(([, kinds]) => kinds.includes(kind)).map(([name]) => name).join(', ')}`})
  }
  if ((type === 'script' || type === 'slurm') && jobs[type] === undefined) {
    throw new UserError(`[jobs.executor] ${kind} = "${type}" and there is no [jobs.${type}] section`, {code: 'config_invalid', exit: ExitCode.config, suggestion: `add [jobs.${type}] with its command (see the README's configuration reference)`})
  }
  // The agent's speed book when its state dir exists, so this run teaches the estimates; else one in memory.
  const speed = existsSync(stateDir) ? new SpeedBook(speedBookFile(stateDir)) : new SpeedBook()
  const executor = createExecutors({...jobs, kinds: [kind]}, {configPath: loaded.path, stateDir, speed}).get(kind)
  if (!executor) throw new Error(`no executor was made for ${kind}`)
  return executor
}

/** A §12 output checked for its kind's shape, in a few words; a mismatch is the executor's failure. */
export function checkOutput(kind: JobKind, output: Buffer, input: Buffer): string {
  const invalid = (why: string) => new ExecutorError('output_invalid', `the output is not a ${kind} result: ${why}`, {retryable: false})
  if (kind === 'container') return `${output.length} bytes left at /output`
  let parsed: unknown
  try {
    parsed = JSON.parse(output.toString('utf8'))
  } catch {
    throw invalid('not JSON')
  }
  if (typeof parsed !== 'object' || parsed === null) throw invalid('not a JSON object')
  if (kind === 'zk_proof') {
    const signals = (parsed as {public_signals?: unknown}).public_signals
    if (!('proof' in parsed) || !Array.isArray(signals)) throw invalid('expected {proof, public_signals}')
    return `a Groth16 proof with public signals [${signals.join(', ')}]`
  }
  const counts = (parsed as {counts?: unknown}).counts
  if (typeof counts !== 'object' || counts === null) throw invalid('expected {counts}')
  const values = Object.values(counts)
  const shots = values.reduce<number>((sum, value) => sum + (typeof value === 'number' ? value : Number.NaN), 0)
  let wanted: unknown
  try {
    wanted = (JSON.parse(input.toString('utf8')) as {shots?: unknown}).shots
  } catch {
    wanted = undefined
  }
  if (typeof wanted === 'number' && shots !== wanted) throw invalid(`the counts sum to ${shots}, not the ${wanted} shots`)
  const top = Object.entries(counts as Record<string, number>).sort((a, b) => b[1] - a[1]).slice(0, 4)
  return `${shots} shots over ${values.length} outcome(s): ${top.map(([bits, n]) => `${bits}×${n}`).join(', ')}${values.length > top.length ? ', …' : ''}`
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`

/** The steps of one local run, in order; a caller may add its own (an attestation of the output) before running them. */
/** The steps of a local run; with `attest` ([attestation] enabled), the result is quoted as a leased job's would be. */
export function runLocalSteps(attest: boolean): Task<RunLocalState>[] {
  const steps: Task<RunLocalState>[] = [
    {
      title: 'Estimate the run time',
      run: async (state) => {
        const estimate = await state.executor.estimate({job: state.job, program: state.options.local.program, input: state.options.local.input})
        return estimate ? {note: `${estimate.seconds.toFixed(2)} s (${estimate.basis})`, add: {estimate}} : {note: 'no estimate yet: nothing measured on this machine for this executor'}
      },
    },
    {
      title: `Run the job`,
      run: async (state) => {
        const started = performance.now()
        const signal = AbortSignal.any([AbortSignal.timeout(state.options.timeoutMs), ...(state.options.signal ? [state.options.signal] : [])])
        const outcome = await state.executor.run({job: state.job, program: state.options.local.program, input: state.options.local.input, workDir: state.workDir, signal})
        const wallMs = performance.now() - started
        return {note: `${state.executor.type}: ${seconds(outcome.executorMs)}, output ${sha256Hex(outcome.output).slice(0, 16)}… (${outcome.output.length} bytes)`, add: {outcome, wallMs, startedAt: Date.now() - wallMs}}
      },
    },
    {
      title: 'Check the output',
      run: async (state) => {
        if (!state.outcome) throw new Error('the output is checked after the run')
        const check = checkOutput(state.job.kind, state.outcome.output, state.options.local.input)
        return {note: check, add: {check}}
      },
    },
    {
      title: 'Attest the result (TPM quote, PROTOCOL §14)',
      run: async (state) => {
        if (!state.outcome) throw new Error('the result is attested after the run')
        // The envelope a leased job would carry, with this run's facts: the quote binds it, and is checked against the AK.
        const attestation = await TpmResultAttester.open(state.options.loaded).attest({
          job_id: state.job.job_id,
          lease_id: 'local',
          program_digest: state.job.program.digest,
          input_digest: state.job.input.digest,
          output: {digest: sha256Hex(state.outcome.output), size_bytes: state.outcome.output.length},
          started_at: state.startedAt ?? Date.now(),
          finished_at: Date.now(),
          signer: 'local',
        })
        return {note: `quote by the recorded AK verified, PCR digest ${attestation.pcr_digest.slice(0, 16)}…`, add: {attestation: {pcr_digest: attestation.pcr_digest}}}
      },
    },
  ]
  return attest ? steps : steps.slice(0, -1)
}

/** An executor's failure said as a cause and a remedy; the executor's detail (stderr, a log) is shown too. */
function explainExecutorError(error: ExecutorError, executor: Executor, options: RunLocalOptions): UserError {
  const remedies: Partial<Record<ExecutorError['code'], string>> = {
    bad_program: 'the program is not valid for its kind: check the file (or --kind)',
    bad_input: 'the input is not valid for this program: check the input file',
    aborted: options.signal?.aborted ? 'the run was interrupted: nothing was kept' : `the run took longer than ${seconds(options.timeoutMs)}: pass a longer --timeout`,
    too_large: 'the job is over this executor\'s limits: raise them in [jobs] or run a smaller job',
    unsupported: 'this executor can\'t run this job here: see `outpost doctor`',
  }
  return new UserError(`${executor.type} could not run the job: ${error.message}${error.detail ? `\n${error.detail.trim()}` : ''}`, {
    code: `executor_${error.code}`,
    suggestion: remedies[error.code] ?? 'check the executor\'s setup with `outpost doctor`, and its section of [jobs]',
  })
}

/** Runs one job through its executor, with the steps shown as they go; resolves with what a person checks. */
export async function runLocal(options: RunLocalOptions, progress: {mode: ProgressMode; log: (line: string) => void}, steps = runLocalSteps(options.loaded.config.attestation.enabled)): Promise<RunLocalResult> {
  const {loaded, local} = options
  const executor = executorFor(loaded, local.kind, loaded.paths.stateDir)
  const workDir = await mkdtemp(join(tmpdir(), 'outpost-run-local-'))
  const programDigest = sha256Hex(local.program)
  const job: ExecutorJob = {
    job_id: `local-${programDigest.slice(0, 16)}`,
    kind: local.kind,
    program: {digest: programDigest, size_bytes: local.program.length},
    input: {digest: sha256Hex(local.input), size_bytes: local.input.length},
    resources: options.resources ?? {cpu_cores: 1, memory_mb: 1024, gpu_count: 0},
    deadline: Date.now() + options.timeoutMs,
  }
  try {
    const state = await runTasks(steps, {options, job, executor, workDir}, progress.mode, progress.log)
    const {outcome, estimate} = state
    if (!outcome || state.check === undefined || state.wallMs === undefined) throw new Error('the run-local steps ended without an output')
    if (options.outputFile) writeFileSync(options.outputFile, outcome.output)
    return {
      kind: local.kind,
      source: local.source,
      executor: executor.type,
      served: loaded.config.jobs.enabled && loaded.config.jobs.kinds.includes(local.kind),
      program: job.program,
      input: job.input,
      estimate: estimate ?? null,
      executor_ms: Math.round(outcome.executorMs),
      wall_ms: Math.round(state.wallMs),
      estimate_ratio: estimate && estimate.seconds > 0 ? Math.round((outcome.executorMs / (estimate.seconds * 1000)) * 100) / 100 : null,
      output: {digest: sha256Hex(outcome.output), size_bytes: outcome.output.length},
      output_file: options.outputFile ?? null,
      check: state.check,
      attestation: state.attestation ?? null,
      measured: outcome.measured,
    }
  } catch (error) {
    if (error instanceof ExecutorError) throw explainExecutorError(error, executor, options)
    throw error
  } finally {
    await executor.close?.()
    await rm(workDir, {recursive: true, force: true})
  }
}
