import {execa} from 'execa'

import {ProvisionAbortedError, ProvisionError} from '../provisioner.js'

export interface ScriptRun {
  /** The operator's executable. */
  command: string
  action: string
  input: unknown
  timeoutMs: number
  signal?: AbortSignal
  /** SIGTERM to SIGKILL when the process group is stopped. */
  killGraceMs?: number
}

export interface ScriptResult {
  exitCode: number | null
  stdout: string
  stderr: string
}

const MAX_OUTPUT = 1024 * 1024
/** Environment variables of the agent that an operator script must never see (keys, passphrases, tokens). */
const PRIVATE_ENV = /^(OUTPOST_|npm_)/

function ownEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !PRIVATE_ENV.test(key)))
}

/** The end of stderr, for error messages: what a failing script last said. */
export function stderrTail(stderr: string, lines = 12): string {
  const tail = stderr.trimEnd().split('\n').slice(-lines).join('\n').trim()
  return tail ? `\n  stderr:\n    ${tail.split('\n').join('\n    ')}` : ''
}

/** Sends a signal to a whole process group; a group already gone is fine. */
function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try {
    process.kill(-pid, signal)
  } catch {
    // The group is gone already.
  }
}

/**
 * Runs `<command> <action>` in its own process group with `input` as JSON on stdin. A timeout or an abort stops the
 * whole group (a script's children included, which may hold its output open): SIGTERM, then SIGKILL after the grace.
 */
export async function runScript(run: ScriptRun): Promise<ScriptResult> {
  const what = `script ${run.command} ${run.action}`
  if (run.signal?.aborted) throw new ProvisionAbortedError(what, {cause: run.signal.reason})
  const script = execa(run.command, [run.action], {
    input: JSON.stringify(run.input) + '\n',
    env: {...ownEnvironment(), OUTPOST_ACTION: run.action},
    extendEnv: false,
    detached: true,
    maxBuffer: MAX_OUTPUT,
    stripFinalNewline: false,
    reject: false,
  })
  const timeout = AbortSignal.timeout(run.timeoutMs)
  const stop = run.signal ? AbortSignal.any([run.signal, timeout]) : timeout
  let stoppedBy: 'timeout' | 'abort' | undefined
  let killTimer: NodeJS.Timeout | undefined
  const onStop = () => {
    stoppedBy = run.signal?.aborted ? 'abort' : 'timeout'
    signalGroup(script.pid, 'SIGTERM')
    killTimer = setTimeout(() => signalGroup(script.pid, 'SIGKILL'), run.killGraceMs ?? 2000)
  }
  stop.addEventListener('abort', onStop, {once: true})
  let result
  try {
    result = await script
  } finally {
    stop.removeEventListener('abort', onStop)
    clearTimeout(killTimer)
  }
  if (stoppedBy === 'abort') throw new ProvisionAbortedError(what, {cause: run.signal?.reason})
  if (stoppedBy === 'timeout') {
    throw new ProvisionError(`${what} timed out after ${Math.round(run.timeoutMs / 1000)} s and was killed${stderrTail(result.stderr)}`, {retryPossible: true})
  }
  if (result.code !== undefined && result.exitCode === undefined && result.signal === undefined) {
    const reason = result.code === 'ENOENT' ? 'no such file' : result.code === 'EACCES' ? 'not executable' : result.shortMessage
    throw new ProvisionError(`${what} could not run: ${reason}`, {retryPossible: false, cause: result})
  }
  if (result.isMaxBuffer) throw new ProvisionError(`${what} printed more than ${MAX_OUTPUT / 1024 ** 2} MiB`, {retryPossible: false})
  return {exitCode: result.exitCode ?? null, stdout: result.stdout, stderr: result.stderr}
}
