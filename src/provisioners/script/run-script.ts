import {spawn} from 'node:child_process'

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

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try {
    process.kill(-pid, signal)
  } catch {
    // The group is gone already.
  }
}

/**
 * Runs `<command> <action>` in its own process group with `input` as JSON on stdin. A timeout or an abort stops the
 * whole group (a script's children included): SIGTERM, then SIGKILL after the grace.
 */
export async function runScript(run: ScriptRun): Promise<ScriptResult> {
  const what = `script ${run.command} ${run.action}`
  if (run.signal?.aborted) throw new ProvisionAbortedError(what, {cause: run.signal.reason})
  const child = spawn(run.command, [run.action], {detached: true, stdio: ['pipe', 'pipe', 'pipe'], env: {...ownEnvironment(), OUTPOST_ACTION: run.action}})
  let stdout = ''
  let stderr = ''
  let stopReason: 'timeout' | 'abort' | undefined
  let killTimer: NodeJS.Timeout | undefined
  const stop = (reason: 'timeout' | 'abort') => {
    if (stopReason) return
    stopReason = reason
    killGroup(child.pid, 'SIGTERM')
    killTimer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), run.killGraceMs ?? 2000)
  }
  const timer = setTimeout(() => stop('timeout'), run.timeoutMs)
  const onAbort = () => stop('abort')
  run.signal?.addEventListener('abort', onAbort, {once: true})
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    if (stdout.length < MAX_OUTPUT) stdout += chunk
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < MAX_OUTPUT) stderr += chunk
  })
  // A script that exits without reading its input closes the pipe; that is its business, not an error here.
  child.stdin.on('error', () => {})
  child.stdin.end(JSON.stringify(run.input) + '\n')

  try {
    const exitCode = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (code) => resolve(code))
    })
    if (stopReason === 'abort') throw new ProvisionAbortedError(what, {cause: run.signal?.reason})
    if (stopReason === 'timeout') {
      throw new ProvisionError(`${what} timed out after ${Math.round(run.timeoutMs / 1000)} s and was killed${stderrTail(stderr)}`, {retryPossible: true})
    }
    return {exitCode, stdout, stderr}
  } catch (error) {
    if (error instanceof ProvisionError) throw error
    const code = (error as NodeJS.ErrnoException).code
    throw new ProvisionError(`${what} could not run: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'not executable' : String(error)}`, {
      retryPossible: false,
      cause: error,
    })
  } finally {
    clearTimeout(timer)
    clearTimeout(killTimer)
    run.signal?.removeEventListener('abort', onAbort)
  }
}
