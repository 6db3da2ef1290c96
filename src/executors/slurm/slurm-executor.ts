import {randomBytes} from 'node:crypto'
import {mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import type {z} from 'zod'

import {runSlurm, SlurmCommandError, SubmittedJob} from '../../provisioners/slurm/commands.js'
import type {SlurmExecutorSection} from '../../core/config/jobs.js'
import {
  ExecutorAbortedError,
  ExecutorError,
  throwIfAborted,
  type EstimateRequest,
  type Executor,
  type JobOutcome,
  type JobRun,
  type RunEstimate,
  type SetupCheck,
} from '../executor.js'
import {readOutputFile} from '../output.js'
import {lastLineRefusal} from '../script/script-executor.js'
import type {SpeedBook} from '../speed-book.js'

export type SlurmExecutorSettings = z.output<typeof SlurmExecutorSection>

/** States in which a batch job has not finished. */
const LIVE_STATES = new Set(['PENDING', 'CONFIGURING', 'RUNNING', 'SUSPENDED', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING', 'COMPLETING', 'SIGNALING', 'STAGE_OUT', 'STAGE_IN', 'STOPPED'])
/** A shared filesystem may show a file written on a compute node a moment after the job is over. */
const RESULT_VISIBLE_MS = 10_000
const LOG_TAIL = 8000

/**
 * Any kind of job as a SLURM batch job, for providers whose compute sits behind a scheduler: the files go to a
 * directory shared with the compute nodes, and the batch job runs the configured command with the script executor's
 * contract (`<command> run`, `{job, program_path, input_path, output_path}` on stdin). The job asks for the job's
 * CPUs, memory and GPUs and a time limit that ends at the deadline; at an abort it is cancelled. The batch script
 * writes the command's exit code to a file, since job accounting (sacct) needs slurmdbd, which small clusters lack.
 *
 * Estimates come from this machine's past runs of the same program only (queueing time included).
 */
export class SlurmExecutor implements Executor {
  readonly type = 'slurm'
  readonly kinds = ['zk_proof', 'quantum_circuit', 'container'] as const

  constructor(
    private readonly settings: SlurmExecutorSettings,
    private readonly speed: SpeedBook,
  ) {}

  async run(run: JobRun): Promise<JobOutcome> {
    const started = performance.now()
    const name = `outpost-job-${run.job.job_id.replaceAll(/[^a-zA-Z0-9_.-]/g, '-').slice(0, 100)}`
    throwIfAborted(run.signal, `batch job ${name}`)
    const dir = join(this.settings.work_dir, `${name}-${randomBytes(4).toString('hex')}`)
    const paths = {program_path: join(dir, 'program'), input_path: join(dir, 'input'), output_path: join(dir, 'output')}
    await mkdir(dir, {recursive: true, mode: 0o700})
    try {
      await Promise.all([
        writeFile(paths.program_path, run.program),
        writeFile(paths.input_path, run.input),
        writeFile(join(dir, 'request.json'), JSON.stringify({job: run.job, ...paths}) + '\n'),
      ])
      let state: string
      let jobId: string
      try {
        jobId = await this.submit(name, dir, run)
        state = await this.waitUntilDone(jobId, run.signal)
      } catch (error) {
        if (run.signal.aborted) {
          // By name: an sbatch cut short may have submitted the job without telling its id.
          await this.slurm('scancel', [`--name=${name}`]).catch(() => undefined)
          throw new ExecutorAbortedError(`batch job ${name}`, {cause: run.signal.reason})
        }
        throw error
      }
      const exitCode = await this.exitCode(dir)
      if (exitCode !== 0) throw await this.failure(dir, state, exitCode, run)
      const output = await readOutputFile(paths.output_path, `batch job ${jobId}`)
      const executorMs = performance.now() - started
      this.speed.record(this.type, run.job.program.digest, executorMs)
      return {output, executorMs, measured: {output_bytes: output.length}}
    } catch (error) {
      if (error instanceof ExecutorError) throw error
      throw new ExecutorError('executor_failed', `batch job ${name}: ${error instanceof Error ? error.message : String(error)}`, {retryable: true, cause: error})
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  }

  async estimate(request: EstimateRequest): Promise<RunEstimate | undefined> {
    return this.speed.estimate({type: this.type, programDigest: request.job.program.digest})
  }

  async verifySetup(signal?: AbortSignal): Promise<SetupCheck[]> {
    try {
      await this.slurm('squeue', ['--noheader', '--me'], signal)
      return [{name: 'slurm (jobs)', ok: true, message: 'squeue answers'}]
    } catch (error) {
      return [{name: 'slurm (jobs)', ok: false, message: error instanceof Error ? error.message : String(error), remedy: 'install the SLURM client commands and munge on this host, or set [jobs.slurm] slurm_conf'}]
    }
  }

  private async submit(name: string, dir: string, run: JobRun): Promise<string> {
    const {resources} = run.job
    const minutes = Math.max(1, Math.ceil((run.job.deadline - Date.now()) / 60_000))
    const args = [
      '--parsable',
      `--job-name=${name}`,
      `--chdir=${dir}`,
      `--output=${join(dir, 'stdout.log')}`,
      `--error=${join(dir, 'stderr.log')}`,
      `--cpus-per-task=${Math.max(1, Math.ceil(resources.cpu_cores))}`,
      `--mem=${resources.memory_mb}M`,
      `--time=${minutes}`,
      ...(resources.gpu_count > 0 ? [`--gres=${gresRequest(resources.gpu_count, resources.gpu_model)}`] : []),
      ...(this.settings.partition ? [`--partition=${this.settings.partition}`] : []),
      ...(this.settings.account ? [`--account=${this.settings.account}`] : []),
    ]
    // The script is given on stdin; paths are quoted for sh, and no value of the job reaches it.
    const script = ['#!/bin/sh', `${shellQuote(this.settings.command)} run < ${shellQuote(join(dir, 'request.json'))}`, `echo $? > ${shellQuote(join(dir, 'exit_code'))}`, ''].join('\n')
    try {
      return SubmittedJob.parse(await this.slurm('sbatch', args, run.signal, script))
    } catch (error) {
      if (run.signal.aborted) throw error
      if (error instanceof SlurmCommandError) throw new ExecutorError('executor_failed', `sbatch refused the job: ${error.message}`, {retryable: true, detail: error.stderr})
      throw error
    }
  }

  /** Polls squeue until the job has left the live states; its last state (or "GONE" once squeue forgot it). */
  private async waitUntilDone(jobId: string, signal: AbortSignal): Promise<string> {
    for (;;) {
      const state = await this.state(jobId, signal)
      if (!LIVE_STATES.has(state)) return state
      await sleep(this.settings.poll_interval_seconds * 1000, undefined, {signal})
    }
  }

  private async state(jobId: string, signal: AbortSignal): Promise<string> {
    try {
      const stdout = await this.slurm('squeue', ['--noheader', '--states=all', `--jobs=${jobId}`, '--format=%T'], signal)
      return stdout.trim().split('\n')[0]?.trim() || 'GONE'
    } catch (error) {
      if (error instanceof SlurmCommandError && /Invalid job id/i.test(error.stderr)) return 'GONE'
      throw error
    }
  }

  private async exitCode(dir: string): Promise<number | undefined> {
    const deadline = Date.now() + RESULT_VISIBLE_MS
    for (;;) {
      try {
        const text = (await readFile(join(dir, 'exit_code'), 'utf8')).trim()
        if (/^\d+$/.test(text)) return Number(text)
      } catch {
        // Not written (the job was killed before the command returned), or not visible yet.
      }
      if (Date.now() > deadline) return undefined
      await sleep(250)
    }
  }

  private async failure(dir: string, state: string, exitCode: number | undefined, run: JobRun): Promise<ExecutorError> {
    const tail = async (name: string) => (await readFile(join(dir, name), 'utf8').catch(() => '')).slice(-LOG_TAIL)
    const stderr = await tail('stderr.log')
    if (state === 'OUT_OF_MEMORY') return new ExecutorError('too_large', `the batch job exceeded the job's ${run.job.resources.memory_mb} MB of memory`, {retryable: true, detail: stderr})
    if (exitCode === undefined) return new ExecutorError('executor_failed', `the batch job ended (${state}) before its command returned`, {retryable: true, detail: stderr})
    const refusal = lastLineRefusal(await tail('stdout.log'))
    if (refusal) return new ExecutorError('executor_failed', `the job runner refused the job: ${refusal.reason}`, {retryable: refusal.retryable, detail: stderr})
    return new ExecutorError('executor_failed', `the job runner exited with code ${exitCode}`, {retryable: true, detail: stderr})
  }

  private slurm(program: string, args: string[], signal?: AbortSignal, input?: string): Promise<string> {
    const env: NodeJS.ProcessEnv = {}
    for (const key of ['PATH', 'HOME', 'USER', 'LANG', 'TZ']) if (process.env[key] !== undefined) env[key] = process.env[key]
    if (this.settings.slurm_conf) env.SLURM_CONF = this.settings.slurm_conf
    return runSlurm(program, {args, input, env, timeoutMs: this.settings.command_timeout_seconds * 1000, signal})
  }
}

/**
 * `gpu:<type>:<n>` when the job names a model that is a GRES type (the slurm backend publishes the partition's GRES
 * types as its GPU models), else `gpu:<n>`: a model that can't be a type is left to the scheduler, never spliced in.
 */
export function gresRequest(count: number, model: string | undefined): string {
  return model !== undefined && /^[\w.-]+$/.test(model) ? `gpu:${model}:${count}` : `gpu:${count}`
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`
}
