import {execa} from 'execa'
import {z} from 'zod'

import {ProvisionAbortedError} from '../provisioner.js'

/** A SLURM command that could not run, or exited non-zero: its stderr says why. */
export class SlurmCommandError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    options: {cause?: unknown} = {},
  ) {
    super(message, options)
    this.name = 'SlurmCommandError'
  }
}

export interface SlurmRun {
  args: readonly string[]
  input?: string
  /** Only these variables reach the command (and, through sbatch, the job): never the agent's own secrets. */
  env: NodeJS.ProcessEnv
  timeoutMs: number
  signal?: AbortSignal
}

const MAX_OUTPUT = 1024 * 1024

/** Runs a SLURM client command and returns its stdout; a non-zero exit is a SlurmCommandError with its stderr. */
export async function runSlurm(program: string, run: SlurmRun): Promise<string> {
  const what = `${program} ${run.args.join(' ')}`
  if (run.signal?.aborted) throw new ProvisionAbortedError(what, {cause: run.signal.reason})
  const result = await execa(program, run.args, {
    input: run.input ?? '',
    env: run.env,
    extendEnv: false,
    timeout: run.timeoutMs,
    cancelSignal: run.signal,
    maxBuffer: MAX_OUTPUT,
    stripFinalNewline: false,
    reject: false,
  })
  if (result.isCanceled) throw new ProvisionAbortedError(what, {cause: run.signal?.reason})
  if (result.exitCode === 0) return result.stdout
  if (result.isMaxBuffer) throw new SlurmCommandError(`${what} printed more than ${MAX_OUTPUT / 1024 ** 2} MiB`, result.stderr)
  if (result.exitCode === undefined && result.signal === undefined) {
    throw new SlurmCommandError(`${program} could not run: ${result.originalMessage ?? result.shortMessage}`, result.stderr, {cause: result})
  }
  const why = result.exitCode === undefined ? `was stopped by ${result.signal}${result.timedOut ? ` (timeout ${run.timeoutMs / 1000} s)` : ''}` : `exited with code ${result.exitCode}`
  const said = result.stderr.trim().split('\n').slice(-3).join(' | ')
  throw new SlurmCommandError(`${what} ${why}${said ? `: ${said}` : ''}`, result.stderr)
}

/** The squeue fields the provisioner reads, in the order of SQUEUE_FORMAT. */
export const SQUEUE_FORMAT = '%i|%j|%T|%N|%M|%r'

export const JobLine = z
  .string()
  .transform((line) => line.split('|'))
  .pipe(z.tuple([z.string().regex(/^\d+$/, 'expected a job id'), z.string(), z.string().regex(/^[A-Z_]+$/, 'expected a job state'), z.string(), z.string(), z.string()]))
  .transform(([id, name, state, nodeList, elapsed, reason]) => ({id, name, state, nodeList, elapsed, reason}))
export type JobLine = z.output<typeof JobLine>

/** squeue's output, one job per line; a line that doesn't parse is an error naming it. */
export function parseJobs(stdout: string): JobLine[] {
  return stdout
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const parsed = JobLine.safeParse(line)
      if (!parsed.success) throw new SlurmCommandError(`unexpected squeue line "${line}": ${parsed.error.issues[0]?.message ?? 'invalid'}`, '')
      return parsed.data
    })
}

/** `sbatch --parsable` prints `<jobid>` or `<jobid>;<cluster>`. */
export const SubmittedJob = z
  .string()
  .transform((text) => text.trim().split(';')[0] ?? '')
  .pipe(z.string().regex(/^\d+$/, 'expected the job id that sbatch --parsable prints'))

const count = z.string().regex(/^\d+$/, 'expected a whole number').transform(Number)

/** `sinfo -N -h -o '%N|%c|%m|%G|%d'`: node, CPUs, memory MB, GRES, temporary disk MB. */
export const NodeLine = z
  .string()
  .transform((line) => line.split('|'))
  .pipe(z.tuple([z.string().min(1), count, count, z.string(), count]))
  .transform(([node, cpus, memoryMb, gres, tmpDiskMb]) => ({node, cpus, memoryMb, gres, tmpDiskMb}))

/** squeue's elapsed time (`%M`): `S`, `M:SS`, `H:MM:SS` or `D-HH:MM:SS`, in seconds. */
export function elapsedSeconds(text: string): number | undefined {
  const match = /^(?:(\d+)-)?(?:(\d+):)?(?:(\d+):)?(\d+)$/.exec(text.trim())
  if (!match) return undefined
  const [, days, first, second, seconds] = match
  // With two colons the fields are H:MM:SS; with one, M:SS.
  const hours = second !== undefined ? Number(first) : 0
  const minutes = second !== undefined ? Number(second) : Number(first ?? 0)
  return Number(days ?? 0) * 86_400 + hours * 3600 + minutes * 60 + Number(seconds)
}

/** The GPU types of a GRES string (`a100` of `gpu:a100:4(S:0-1)`); an untyped `gpu:2` names none. */
export function gresGpuTypes(gres: string): string[] {
  const types: string[] = []
  for (const item of gres.split(',')) {
    const match = /^gpu:([^:(]+):\d+/.exec(item)
    if (match) types.push(match[1]!)
  }
  return types
}

/** The GPUs of a GRES string like `gpu:2`, `gpu:a100:4(S:0-1)` or `(null)`. */
export function gresGpus(gres: string): number {
  let total = 0
  for (const item of gres.split(',')) {
    const match = /^gpu(?::[^:(]+)?:(\d+)/.exec(item)
    if (match) total += Number(match[1])
  }
  return total
}
