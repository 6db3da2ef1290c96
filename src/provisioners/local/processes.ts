import {readdirSync, readFileSync} from 'node:fs'
import {createServer} from 'node:net'

import {pollUntil, PollTimeoutError} from '../poll.js'

/** The environment variable that marks a workload process as the instance it belongs to. */
export const INSTANCE_MARKER = 'OUTPOST_INSTANCE'

const PROC = '/proc'

function environOf(pid: number): string | undefined {
  try {
    return readFileSync(`${PROC}/${pid}/environ`, 'latin1')
  } catch {
    return undefined
  }
}

function markerOf(name: string): string {
  return `${INSTANCE_MARKER}=${name}\0`
}

/**
 * True when `pid` is alive and is still the workload of `name`. On Linux the process's environment must carry the
 * instance marker, so a pid the kernel reused for another program is never taken for ours (nor killed).
 */
export function isInstanceProcess(pid: number, name: string): boolean {
  if (process.platform === 'linux') {
    const environ = environOf(pid)
    // A zombie has an empty environ: it is gone for our purposes.
    if (environ !== undefined) return environ.includes(markerOf(name))
  }
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The live processes carrying the marker of `name` (Linux only: elsewhere none can be found this way). */
export function findMarkedProcesses(name: string): number[] {
  if (process.platform !== 'linux') return []
  const marker = markerOf(name)
  const found: number[] = []
  for (const entry of readdirSync(PROC)) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid !== process.pid && environOf(pid)?.includes(marker)) found.push(pid)
  }
  return found
}

/** Sends a signal to a whole process group; false when the group is already gone. */
export function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw error
  }
}

/** SIGTERM to the group, then SIGKILL once the leader is gone (children it left go too) or after `graceMs`. */
export async function killGroup(pid: number, name: string, graceMs: number): Promise<void> {
  if (!signalGroup(pid, 'SIGTERM')) return
  try {
    await pollUntil(async () => (isInstanceProcess(pid, name) ? undefined : true), {what: `${name} stopping`, timeoutMs: graceMs, initialMs: 25})
  } catch (error) {
    if (!(error instanceof PollTimeoutError)) throw error
  }
  signalGroup(pid, 'SIGKILL')
}

/** A TCP port that was free a moment ago (the workload binds it itself; a lost race is retried by the caller). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))))
    })
  })
}
