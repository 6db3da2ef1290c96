import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {ExitCode, UserError} from '../core/errors.js'

export interface DrainResult {
  pid: number
  state_dir: string
  /** Seconds from the signal to the agent's exit. */
  seconds: number
}

/** The pid of the agent running on this state dir (its `agent.pid`), or undefined when none runs. */
export function runningAgentPid(stateDir: string): number | undefined {
  let pid: number
  try {
    pid = Number(readFileSync(join(stateDir, 'agent.pid'), 'utf8').trim())
  } catch {
    return undefined
  }
  return Number.isInteger(pid) && pid > 0 && processAlive(pid) ? pid : undefined
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

const POLL_MS = 200

/**
 * `outpost drain`: signals the agent of this state dir (SIGTERM, which `outpost run` takes as a drain: it heartbeats
 * `draining`, takes no new work, finishes what runs, then exits) and waits for it to be gone.
 */
export async function drainAgent(options: {stateDir: string; timeoutMs: number; onWaiting?: (pid: number) => void}): Promise<DrainResult> {
  const pid = runningAgentPid(options.stateDir)
  if (pid === undefined) {
    throw new UserError(`no agent runs with the state dir ${options.stateDir}`, {
      code: 'agent_not_running',
      exit: ExitCode.refused,
      suggestion: 'nothing to drain; check the config (--config) names the agent you mean, or `outpost status`',
    })
  }
  const started = Date.now()
  try {
    process.kill(pid, 'SIGTERM')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ESRCH') {
      throw new UserError(`cannot signal the agent (pid ${pid}): ${code ?? String(error)}`, {
        code: 'agent_not_signalled',
        exit: ExitCode.refused,
        suggestion: 'run `outpost drain` as the user the agent runs as (or root)',
      })
    }
  }
  options.onWaiting?.(pid)
  const deadline = started + options.timeoutMs
  while (processAlive(pid)) {
    if (Date.now() >= deadline) {
      throw new UserError(`the agent (pid ${pid}) is still finishing its work after ${Math.round(options.timeoutMs / 1000)} s`, {
        code: 'drain_timeout',
        exit: ExitCode.failed,
        suggestion: 'wait longer (--timeout), follow it in its log, or stop it now with a second `kill -TERM ' + pid + '` (work in progress is checkpointed for the next run)',
      })
    }
    await sleep(POLL_MS)
  }
  return {pid, state_dir: options.stateDir, seconds: Math.round((Date.now() - started) / 100) / 10}
}
