import {chmod, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {z} from 'zod'

import {CONTAINER_RUNTIME_REMEDY} from '../../gpu/container-runtime.js'
import {demultiplexLogs, DockerApiError, DockerEngine} from '../../provisioners/docker/engine.js'
import type {DockerExecutorSection} from '../../core/config/jobs.js'
import {
  ExecutorAbortedError,
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
import {readOutputFile} from '../output.js'
import type {SpeedBook} from '../speed-book.js'

export type DockerExecutorSettings = z.output<typeof DockerExecutorSection>

/** A `container` program (§12). */
export const ContainerProgram = z.strictObject({
  image: z.string().min(1).max(512).regex(/^[^\s]+$/, 'expected an image reference without spaces'),
  command: z.array(z.string()).min(1).max(1024),
})

/** Every job container carries this label (with the job id): not the provisioner's, whose pruning must not touch it. */
export const JOB_LABEL = 'outpost.job'

const ContainerCreated = z.looseObject({Id: z.string()})
const WaitAnswer = z.looseObject({StatusCode: z.number().int(), Error: z.looseObject({Message: z.string()}).nullish()})
const ContainerState = z.looseObject({State: z.looseObject({OOMKilled: z.boolean().optional()})})
const ContainerLabels = z.looseObject({Id: z.string(), Config: z.looseObject({Labels: z.record(z.string(), z.string()).nullish()})})
const EngineInfo = z.looseObject({ServerVersion: z.string()})

const LOG_TAIL_LINES = 20
/** Waiting for the container is bounded by the deadline; this much more covers the engine's own answer. */
const WAIT_SLACK_MS = 30_000

/**
 * `container` jobs on a Docker engine on this host: the program's image and command, the input bind-mounted
 * read-only at /input and an empty file at /output whose content is the result (at most 16 MiB). The container gets
 * the job's CPU and memory (no swap) as limits and its GPUs, no network, no capabilities, no new privileges, a process
 * limit, and is killed and removed at the deadline. Outpost never pulls: an image the engine doesn't have fails the
 * job as retryable, for a provider that has it.
 *
 * Estimates come from this machine's past runs of the same program only: a container's work can't be read from it.
 */
export class DockerExecutor implements Executor {
  readonly type = 'docker'
  readonly kinds = ['container'] as const
  private readonly engine: DockerEngine

  constructor(
    private readonly settings: DockerExecutorSettings,
    private readonly speed: SpeedBook,
  ) {
    this.engine = new DockerEngine(settings.socket, settings.request_timeout_seconds * 1000)
  }

  async run(run: JobRun): Promise<JobOutcome> {
    const started = performance.now()
    const name = containerName(run.job.job_id)
    throwIfAborted(run.signal, `running container ${name}`)
    const program = parseJobBytes(ContainerProgram, run.program, 'program')
    if ((run.gpus?.length ?? 0) !== run.job.resources.gpu_count) {
      throw new ExecutorError('unsupported', `the job asks for ${run.job.resources.gpu_count} GPUs and was allocated ${run.gpus?.length ?? 0}`, {retryable: true})
    }
    if (this.settings.allowed_images && !this.settings.allowed_images.includes(program.image)) {
      throw new ExecutorError('unsupported', `image ${program.image} is not among the images this provider runs`, {retryable: true})
    }
    const inputPath = join(run.workDir, 'input')
    const outputPath = join(run.workDir, 'output')
    await writeFile(inputPath, run.input, {mode: 0o644})
    await writeFile(outputPath, '')
    // The image may run as any user: it must be able to write the output (the directory stays the agent's).
    await chmod(outputPath, 0o666)
    let id: string | undefined
    try {
      await this.removeLeftover(name, run.job.job_id, run.signal)
      id = await this.create(name, run, program, inputPath, outputPath)
      await this.engine.call(`starting container ${name}`, {method: 'POST', path: `/containers/${id}/start`}, run.signal)
      const exit = await this.wait(id, name, run)
      const containerMs = performance.now() - started
      if (exit.StatusCode !== 0) {
        const state = await this.engine.json(`inspecting container ${name}`, ContainerState, {method: 'GET', path: `/containers/${id}/json`})
        const log = await this.logTail(id)
        if (state?.State.OOMKilled) throw new ExecutorError('too_large', `the container was killed for exceeding the job's ${run.job.resources.memory_mb} MB of memory`, {retryable: true, detail: log})
        throw new ExecutorError('executor_failed', `the container's command exited with code ${exit.StatusCode}`, {retryable: false, detail: log})
      }
      const output = await readOutputFile(outputPath, 'the container')
      const executorMs = performance.now() - started
      this.speed.record(this.type, run.job.program.digest, executorMs)
      return {output, executorMs, measured: {container_ms: containerMs, output_bytes: output.length}}
    } catch (error) {
      if (run.signal.aborted) throw new ExecutorAbortedError(`running container ${name}`, {cause: run.signal.reason})
      if (error instanceof ExecutorError) throw error
      if (error instanceof DockerApiError && /could not select device driver/.test(error.message)) {
        throw new ExecutorError('unsupported', "this host's Docker engine has no NVIDIA container runtime", {retryable: true, detail: `${error.message} (${CONTAINER_RUNTIME_REMEDY})`, cause: error})
      }
      if (error instanceof DockerApiError && error.status === 404 && id === undefined) {
        throw new ExecutorError('unsupported', `image ${program.image} is not on this host's Docker engine (outpost never pulls)`, {retryable: true, cause: error})
      }
      throw new ExecutorError('executor_failed', error instanceof Error ? error.message : String(error), {retryable: true, cause: error})
    } finally {
      // Killed at the deadline or done: the container goes either way (no signal: this must run after an abort too).
      await this.remove(id ?? name).catch(() => undefined)
    }
  }

  async estimate(request: EstimateRequest): Promise<RunEstimate | undefined> {
    return this.speed.estimate({type: this.type, programDigest: request.job.program.digest})
  }

  async verifySetup(signal?: AbortSignal): Promise<SetupCheck[]> {
    try {
      const info = await this.engine.json('reading engine info', EngineInfo, {method: 'GET', path: '/info'}, signal)
      return [{name: 'docker engine (jobs)', ok: true, message: `${this.settings.socket} answers (Docker ${info?.ServerVersion ?? 'unknown'})`}]
    } catch (error) {
      return [
        {
          name: 'docker engine (jobs)',
          ok: false,
          message: error instanceof Error ? error.message : String(error),
          remedy: `start the Docker engine on this host, or set [jobs.docker] socket; the agent's user needs access to ${this.settings.socket}`,
        },
      ]
    }
  }

  private async create(name: string, run: JobRun, program: z.infer<typeof ContainerProgram>, inputPath: string, outputPath: string): Promise<string> {
    const {resources} = run.job
    const memory = resources.memory_mb * 1024 * 1024
    const body = {
      Image: program.image,
      Cmd: program.command,
      Labels: {[JOB_LABEL]: run.job.job_id},
      NetworkDisabled: true,
      HostConfig: {
        NetworkMode: 'none',
        // Mounts rather than Binds: a path with a colon or comma can't be misread.
        Mounts: [
          {Type: 'bind', Source: inputPath, Target: '/input', ReadOnly: true},
          {Type: 'bind', Source: outputPath, Target: '/output'},
        ],
        NanoCpus: Math.round(resources.cpu_cores * 1e9),
        Memory: memory,
        MemorySwap: memory,
        PidsLimit: this.settings.pids_limit,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        // The job's allocated devices by UUID, never a count the engine picks from (another holder may have them).
        ...(resources.gpu_count > 0 ? {DeviceRequests: [{Driver: '', DeviceIDs: (run.gpus ?? []).map((unit) => unit.id), Capabilities: [['gpu']]}]} : {}),
      },
    }
    const created = await this.engine.json(`creating container ${name}`, ContainerCreated, {method: 'POST', path: '/containers/create', query: {name}, body}, run.signal)
    if (!created) throw new ExecutorError('executor_failed', `creating container ${name}: no answer`, {retryable: true})
    return created.Id
  }

  /** Waits for the container to stop, with a connection that may stay open until the deadline. */
  private async wait(id: string, name: string, run: JobRun): Promise<z.infer<typeof WaitAnswer>> {
    const waiter = new DockerEngine(this.settings.socket, Math.max(1000, run.job.deadline - Date.now()) + WAIT_SLACK_MS)
    const answer = await waiter.json(`waiting for container ${name}`, WaitAnswer, {method: 'POST', path: `/containers/${id}/wait`, query: {condition: 'not-running'}}, run.signal)
    if (!answer) throw new ExecutorError('executor_failed', `waiting for container ${name}: no answer`, {retryable: true})
    if (answer.Error?.Message) throw new ExecutorError('executor_failed', `container ${name}: ${answer.Error.Message}`, {retryable: true})
    return answer
  }

  /** A container of this job left by an agent that stopped mid-run goes (the job starts over); another's is not touched. */
  private async removeLeftover(name: string, jobId: string, signal: AbortSignal): Promise<void> {
    const found = await this.engine.json(`inspecting container ${name}`, ContainerLabels, {method: 'GET', path: `/containers/${name}/json`, accept: [404]}, signal)
    if (!found) return
    if (found.Config.Labels?.[JOB_LABEL] !== jobId) throw new ExecutorError('executor_failed', `a container named ${name} exists that outpost did not make for this job`, {retryable: true})
    await this.remove(found.Id)
  }

  private async remove(idOrName: string): Promise<void> {
    await this.engine.call(`removing container ${idOrName}`, {method: 'DELETE', path: `/containers/${encodeURIComponent(idOrName)}`, query: {force: true, v: true}, accept: [404, 409]})
  }

  private async logTail(id: string): Promise<string> {
    try {
      const answer = await this.engine.call(`logs of container ${id}`, {method: 'GET', path: `/containers/${id}/logs`, query: {stdout: true, stderr: true, tail: LOG_TAIL_LINES}})
      return demultiplexLogs(answer.body).trim()
    } catch {
      return ''
    }
  }
}

/** `outpost-job-<id>`, with what a container name can't hold replaced. */
export function containerName(jobId: string): string {
  return `outpost-job-${jobId.replaceAll(/[^a-zA-Z0-9_.-]/g, '-').slice(0, 100)}`
}
