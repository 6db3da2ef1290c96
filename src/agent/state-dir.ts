import {lstatSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {join} from 'node:path'

import {ExitCode, UserError} from '../core/errors.js'
import {writeFileAtomic} from '../core/files.js'
import {isOutOfSpace} from './state-disk.js'

/** A pid file the disk had no room for: the claim holds in this process, and `write` is tried again later. */
export interface UnwrittenPidFile {
  path: string
  error: unknown
  write: () => void
}

export interface StateDirClaim {
  release: () => void
  unwritten?: UnwrittenPidFile
}

/** One agent per state dir: two would each think the other's work was left unfinished by a crash. */
export function claimStateDir(stateDir: string): StateDirClaim {
  const path = join(stateDir, 'agent.pid')
  let holder: number | undefined
  try {
    holder = Number(readFileSync(path, 'utf8').trim())
  } catch {
    holder = undefined
  }
  if (holder && holder !== process.pid && processAlive(holder)) {
    throw new UserError(`another agent (pid ${holder}) runs with the state dir ${stateDir}`, {
      code: 'agent_running',
      exit: ExitCode.refused,
      suggestion: 'stop it first, or give this agent its own [agent] state_dir',
    })
  }
  const release = () => rmSync(path, {force: true})
  const write = () => writeFileAtomic(path, `${process.pid}\n`, 0o600)
  try {
    write()
  } catch (error) {
    // A full disk is an operating condition, not a reason to stop what runs: the agent writes the file once it can.
    if (!isOutOfSpace(error)) throw error
    return {release, unwritten: {path, error, write}}
  }
  return {release}
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** What writeFileAtomic (core/files.ts) names its temporary files: `.<name>.<12 hex>.tmp`. */
const TEMP_FILE = /^\..+\.[0-9a-f]{12}\.tmp$/

/**
 * Removes the temporary files of writes a kill cut short (one may hold an instance password), under the state dir,
 * when they are older than `before`: the caller holds the state dir, so nothing writes them any more.
 */
export function removeTempFiles(stateDir: string, before: number, depth = 3): string[] {
  const removed: string[] = []
  let names: string[]
  try {
    names = readdirSync(stateDir)
  } catch {
    return removed
  }
  for (const name of names) {
    const path = join(stateDir, name)
    let stats
    try {
      stats = lstatSync(path)
    } catch {
      continue
    }
    if (stats.isDirectory() && depth > 0) removed.push(...removeTempFiles(path, before, depth - 1))
    else if (stats.isFile() && TEMP_FILE.test(name) && stats.mtimeMs < before) {
      rmSync(path, {force: true})
      removed.push(path)
    }
  }
  return removed
}
