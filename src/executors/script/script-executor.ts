import {constants} from 'node:fs'
import {access, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {execa} from 'execa'
import {z} from 'zod'

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
import type {SpeedBook} from '../speed-book.js'
import {readOutputFile} from '../output.js'

export interface ScriptSettings {
  command: string
  killGraceMs: number
}

/** What a script may print as its last line of stdout when it fails: why, and whether another provider could succeed. */
const ScriptRefusal = z.looseObject({reason: z.string().min(1).max(500), retryable: z.boolean()})

/** Environment variables of the agent that an operator's script must never see (keys, passphrases, tokens). */
const PRIVATE_ENV = /^(OUTPOST_|npm_)/
const OUTPUT_TAIL = 8000

/**
 * The operator's own program, for any kind: `<command> run` with `{job, program_path, input_path, output_path}` as
 * JSON on stdin; the file it leaves at output_path is the result. It runs in its own process group, stopped as a
 * whole (SIGTERM, then SIGKILL after the grace) when the signal fires, so a script's children don't outlive the job.
 * Its stderr goes to the local log only. A failing script may print `{"reason": "...", "retryable": false}` as its
 * last line of stdout to say the job itself is at fault; any other failure is taken as this host's (retryable).
 *
 * Estimates come from this machine's past runs of the same program only: the script's speed can't be known ahead.
 */
export class ScriptExecutor implements Executor {
  readonly type = 'script'
  readonly kinds = ['zk_proof', 'quantum_circuit', 'container'] as const

  constructor(
    private readonly settings: ScriptSettings,
    private readonly speed: SpeedBook,
  ) {}

  async run(run: JobRun): Promise<JobOutcome> {
    const started = performance.now()
    const what = `script ${this.settings.command} for job ${run.job.job_id}`
    throwIfAborted(run.signal, what)
    const paths = {program_path: join(run.workDir, 'program'), input_path: join(run.workDir, 'input'), output_path: join(run.workDir, 'output')}
    await Promise.all([writeFile(paths.program_path, run.program), writeFile(paths.input_path, run.input)])
    const result = await runCommand(this.settings, ['run'], JSON.stringify({job: run.job, ...paths}) + '\n', run.workDir, run.signal, what)
    if (result.failed) {
      const refusal = lastLineRefusal(result.stdout)
      if (refusal) throw new ExecutorError('executor_failed', `the job runner refused the job: ${refusal.reason}`, {retryable: refusal.retryable, detail: result.stderr})
      throw new ExecutorError('executor_failed', `the job runner ${result.why}`, {retryable: true, detail: result.stderr})
    }
    const output = await readOutputFile(paths.output_path, 'the job runner')
    const executorMs = performance.now() - started
    this.speed.record(this.type, run.job.program.digest, executorMs)
    return {output, executorMs, measured: {output_bytes: output.length}}
  }

  async estimate(request: EstimateRequest): Promise<RunEstimate | undefined> {
    return this.speed.estimate({type: this.type, programDigest: request.job.program.digest})
  }

  async verifySetup(): Promise<SetupCheck[]> {
    try {
      await access(this.settings.command, constants.X_OK)
      return [{name: 'job runner script', ok: true, message: `${this.settings.command} is executable`}]
    } catch {
      return [{name: 'job runner script', ok: false, message: `${this.settings.command} is missing or not executable`, remedy: `chmod +x ${this.settings.command}, or fix [jobs.script] command`}]
    }
  }
}

/** The refusal a failing runner printed as its last line of stdout, if it printed one. */
export function lastLineRefusal(stdout: string): z.infer<typeof ScriptRefusal> | undefined {
  const last = stdout.trimEnd().split('\n').at(-1)
  if (!last) return undefined
  try {
    const parsed = ScriptRefusal.safeParse(JSON.parse(last))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

export interface CommandResult {
  failed: boolean
  /** Why it failed, for a message: "exited with code 3", "was killed by SIGKILL". */
  why: string
  stdout: string
  stderr: string
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try {
    process.kill(-pid, signal)
  } catch {
    // The group is gone already.
  }
}

/**
 * Runs `<command> <args>` in its own process group with `input` on stdin, through execa. When the signal fires the
 * whole group gets SIGTERM and, after the grace, SIGKILL (execa alone would signal only the direct child, and a
 * grandchild holding the pipes open would keep the run waiting), and the run ends in ExecutorAbortedError.
 */
export async function runCommand(settings: ScriptSettings, args: string[], input: string, cwd: string, signal: AbortSignal, what: string): Promise<CommandResult> {
  const environment = Object.fromEntries(Object.entries(process.env).filter(([key]) => !PRIVATE_ENV.test(key)))
  const subprocess = execa(settings.command, args, {
    input,
    cwd,
    env: environment,
    extendEnv: false,
    detached: true,
    reject: false,
    stripFinalNewline: false,
    maxBuffer: 8 * 1024 * 1024,
    cancelSignal: signal,
    forceKillAfterDelay: settings.killGraceMs,
  })
  let graceTimer: NodeJS.Timeout | undefined
  const stopGroup = () => {
    killGroup(subprocess.pid, 'SIGTERM')
    graceTimer = setTimeout(() => killGroup(subprocess.pid, 'SIGKILL'), settings.killGraceMs)
  }
  signal.addEventListener('abort', stopGroup, {once: true})
  try {
    const result = await subprocess
    if (signal.aborted) throw new ExecutorAbortedError(what, {cause: signal.reason})
    const stderr = result.stderr.slice(-OUTPUT_TAIL)
    if (result.failed && result.exitCode === undefined && !result.signal) {
      const code = (result.cause as NodeJS.ErrnoException | undefined)?.code
      throw new ExecutorError('executor_failed', `${settings.command} could not run: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'not executable' : result.shortMessage}`, {retryable: true, cause: result.cause})
    }
    const why = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.exitCode}`
    return {failed: result.failed, why, stdout: result.stdout, stderr}
  } finally {
    clearTimeout(graceTimer)
    signal.removeEventListener('abort', stopGroup)
    // Whatever the script started in its group and left behind goes with it.
    killGroup(subprocess.pid, 'SIGKILL')
  }
}
