import {z} from 'zod'

import {JOB_KINDS} from '../core/api/job-kinds.js'
import type {ExecutorType} from '../core/config/jobs.js'
import type {GpuUnit} from '../gpu/allocator.js'

/** The job kinds of PROTOCOL §12. */
export const JobKind = z.enum(JOB_KINDS)
export type JobKind = z.infer<typeof JobKind>

/** Outputs (and container programs' outputs at /output) are at most 16 MiB (§12). */
export const MAX_OUTPUT_BYTES = 16 * 1024 * 1024

/**
 * The fields of a §12 job that an executor reads. The agent hands over the job it parsed from the marketplace; any
 * job object with these fields fits, so executors don't depend on the API client's schemas.
 */
export const ExecutorJob = z.looseObject({
  job_id: z.string().min(1),
  kind: JobKind,
  program: z.looseObject({digest: z.string(), size_bytes: z.number().int().nonnegative()}),
  input: z.looseObject({digest: z.string(), size_bytes: z.number().int().nonnegative()}),
  resources: z.looseObject({
    cpu_cores: z.number().positive(),
    memory_mb: z.number().int().positive(),
    gpu_count: z.number().int().nonnegative(),
    gpu_model: z.string().optional(),
  }),
  /** Unix milliseconds (§12). */
  deadline: z.number().int(),
})
export type ExecutorJob = z.infer<typeof ExecutorJob>

/** One run of one job. The program and input bytes were digest-checked by the caller. */
export interface JobRun {
  job: ExecutorJob
  program: Buffer
  input: Buffer
  /** An empty directory for this run alone; the caller removes it afterwards. */
  workDir: string
  /** Fires at the deadline, or when the agent shuts down: the executor stops its work and throws ExecutorAbortedError. */
  signal: AbortSignal
  /**
   * The devices the caller allocated to the job (holder `job:<id>`, journalled) when it asks for GPUs and the
   * executor runs it on this host (docker); an executor whose scheduler places GPUs itself (slurm) ignores them.
   */
  gpus?: readonly GpuUnit[]
}

export interface JobOutcome {
  /** The output bytes of §12 for the job's kind. */
  output: Buffer
  /** Wall time of the executor's own work, from the start of run() to the output in hand. */
  executorMs: number
  /** What the executor measured on the way (phases in ms, sizes), for the log and metrics. */
  measured: Record<string, number>
}

/** An expected run time on this machine, and how it was reached (for the decision line in the log). */
export interface RunEstimate {
  seconds: number
  basis: string
}

export interface EstimateRequest {
  job: ExecutorJob
  program: Buffer
  /** The input bytes, when the caller fetched them already (the quantum estimate reads the shots from it). */
  input?: Buffer
}

export interface SetupCheck {
  name: string
  ok: boolean
  message: string
  remedy?: string
}

/**
 * One interface for every way of running a job (§12). An executor knows nothing of leases or the marketplace: it
 * turns program and input bytes into output bytes, or throws an ExecutorError saying whether another provider could
 * do better.
 */
export interface Executor {
  readonly type: ExecutorType
  /** The job kinds this executor can run. */
  readonly kinds: readonly JobKind[]
  run(run: JobRun): Promise<JobOutcome>
  /**
   * The expected run time of the job here, from this machine's measured speed; undefined when nothing has been
   * measured yet that applies (see calibrate()).
   */
  estimate(request: EstimateRequest): Promise<RunEstimate | undefined>
  /**
   * Measures this machine once with a built-in example, so estimate() can answer for programs never run here; kept
   * in the speed book across restarts. Executors without a built-in example learn from their runs only.
   */
  calibrate?(signal: AbortSignal): Promise<void>
  /** Whether the executor can run here (libraries, engine, commands), for `outpost doctor`. */
  verifySetup(signal?: AbortSignal): Promise<SetupCheck[]>
  /** Stops what the executor keeps running between jobs. */
  close?(): Promise<void>
}

/** Stable codes of failures, usable as the `reason` of `POST .../fail` (§12). */
export type ExecutorFailure =
  | 'bad_program'
  | 'bad_input'
  | 'unsupported'
  | 'too_large'
  | 'executor_failed'
  | 'output_invalid'
  | 'output_too_large'
  | 'not_verified'
  | 'aborted'

/**
 * A job that could not run. `retryable` says whether another provider (or a later attempt) could succeed: a program
 * that is not valid can't run anywhere; a circuit wider than this simulator, a missing image or a crash may run
 * elsewhere. `message` may go to the marketplace as the failure reason; `detail` (a script's stderr, a container's
 * log) stays in the local log, since it may say more about this host than a renter should read.
 */
export class ExecutorError extends Error {
  readonly code: ExecutorFailure
  readonly retryable: boolean
  readonly detail: string | undefined

  constructor(code: ExecutorFailure, message: string, options: {retryable: boolean; detail?: string; cause?: unknown}) {
    super(message, {cause: options.cause})
    this.name = 'ExecutorError'
    this.code = code
    this.retryable = options.retryable
    this.detail = options.detail
  }
}

/**
 * The run stopped because its signal fired (the deadline, or the agent shutting down), not because the job failed:
 * the caller knows which, and decides between failing the lease and resuming it after a restart.
 */
export class ExecutorAbortedError extends ExecutorError {
  constructor(what: string, options: {cause?: unknown} = {}) {
    super('aborted', `${what}: aborted`, {retryable: true, cause: options.cause})
    this.name = 'ExecutorAbortedError'
  }
}

export function throwIfAborted(signal: AbortSignal, what: string): void {
  if (signal.aborted) throw new ExecutorAbortedError(what, {cause: signal.reason})
}

/** Parses bytes from the job with a schema; a mismatch names the field and is the job's fault (no retry helps). */
export function parseJobBytes<S extends z.ZodType>(schema: S, bytes: Buffer, what: 'program' | 'input', asJson = true): z.infer<S> {
  const code = what === 'program' ? 'bad_program' : 'bad_input'
  let value: unknown = bytes
  if (asJson) {
    try {
      value = JSON.parse(bytes.toString('utf8'))
    } catch (error) {
      throw new ExecutorError(code, `the ${what} is not JSON`, {retryable: false, cause: error})
    }
  }
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : ''
    throw new ExecutorError(code, `the ${what} is not valid${where}: ${issue?.message ?? 'invalid'}`, {retryable: false})
  }
  return parsed.data
}
