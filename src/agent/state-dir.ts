import {linkSync, lstatSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {ExitCode, UserError} from '../core/errors.js'
import {writeFileAtomic} from '../core/files.js'
import {randomHex} from '../core/signing.js'
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
  const text = `${process.pid}\n`
  // Only this agent's own file is removed: after a stale file was taken over, it may be another agent's.
  const release = () => {
    if (holderOf(path) === process.pid) rmSync(path, {force: true})
  }
  const write = () => writeFileAtomic(path, text, 0o600)
  // Twice: a first attempt may find the file of an agent that is gone (it is removed, and the claim tried again).
  for (let attempt = 0; attempt < 2; attempt++) {
    let created: boolean
    try {
      created = createExclusive(path, text)
    } catch (error) {
      // A full disk is an operating condition, not a reason to stop what runs: the agent writes the file once it can.
      if (!isOutOfSpace(error)) throw error
      refuseIfHeld(stateDir, holderOf(path))
      return {release, unwritten: {path, error, write}}
    }
    if (created) return {release}
    const holder = holderOf(path)
    if (holder === process.pid) return {release}
    refuseIfHeld(stateDir, holder)
    rmSync(path, {force: true})
  }
  // Another agent took the file between the removal of a stale one and this claim.
  refuseIfHeld(stateDir, holderOf(path))
  return {release}
}

/**
 * Creates `path` holding `text` only when it does not exist, atomically (a hard link of a complete temporary file),
 * so two agents started together can't both believe they hold the state dir. False when it exists.
 */
function createExclusive(path: string, text: string): boolean {
  const temporary = `${path}.${process.pid}.${randomHex(6)}.claim`
  writeFileSync(temporary, text, {mode: 0o600})
  try {
    linkSync(temporary, path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  } finally {
    rmSync(temporary, {force: true})
  }
}

/** The pid a pid file names; undefined when there is none or it can't be read. */
function holderOf(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim())
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function refuseIfHeld(stateDir: string, holder: number | undefined): void {
  if (holder && holder !== process.pid && processAlive(holder)) {
    throw new UserError(`another agent (pid ${holder}) runs with the state dir ${stateDir}`, {
      code: 'agent_running',
      exit: ExitCode.refused,
      suggestion: 'stop it first, or give this agent its own [agent] state_dir',
    })
  }
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
