import {rmSync, statfsSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {describeError} from '../core/errors.js'
import type {AgentLog} from './logger.js'

/** ENOSPC or EDQUOT: the state disk, or this user's quota on it, is full. */
export function isOutOfSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}

/** The out-of-space error behind `error` (itself, or along its causes), if there is one. */
export function outOfSpaceCause(error: unknown): unknown {
  let current: unknown = error
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    if (isOutOfSpace(current)) return current
    current = current instanceof Error ? current.cause : undefined
  }
  return undefined
}

/** Bytes this user may still write under `dir`; undefined when the filesystem can't say. */
export function freeBytes(dir: string): number | undefined {
  try {
    const stats = statfsSync(dir)
    return stats.bavail * stats.bsize
  } catch {
    return undefined
  }
}

/** Written and removed again to tell that there is room for more than the writes that were waiting. */
const PROBE_BYTES = 64 * 1024

export interface StateDiskOptions {
  dir: string
  log: AgentLog
  /** Called with true when the disk fills up, false when it has room again. */
  onChange?: (full: boolean) => void
}

/**
 * The state disk as an operating condition. A write that fails for lack of space puts the agent in a degraded mode:
 * it takes no new work, keeps running what runs, keeps what it could not write in memory (reports are still sent),
 * and writes it again on each retry() until everything fits; then it takes work again. One log line when the disk
 * fills, one when it has room again, never a stack trace.
 */
export class StateDisk {
  private fullSince: number | undefined
  private readonly rewrites = new Map<string, () => void>()
  private waiters: (() => void)[] = []

  constructor(private readonly options: StateDiskOptions) {}

  get full(): boolean {
    return this.fullSince !== undefined
  }

  /**
   * A write of `path` failed: true when for lack of space (the caller keeps what it could not write and registers a
   * rewrite), false for any other error, which the caller handles itself.
   */
  noteFailure(path: string, error: unknown): boolean {
    if (!isOutOfSpace(error)) return false
    this.fill(path, (error as NodeJS.ErrnoException).code ?? 'ENOSPC')
    return true
  }

  /**
   * Whether there is room for new work: a disk with less free than a probe takes is full before a write fails (a
   * restart on a full disk finds a few freed blocks, not room to work in).
   */
  hasRoom(): boolean {
    if (this.fullSince !== undefined) return false
    const free = freeBytes(this.options.dir)
    if (free !== undefined && free < PROBE_BYTES) this.fill(this.options.dir, 'low_space')
    return this.fullSince === undefined
  }

  private fill(path: string, code: string): void {
    if (this.fullSince !== undefined) return
    this.fullSince = Date.now()
    this.options.log.error(
      {path, free_bytes: freeBytes(this.options.dir), code},
      'the state disk is full: no new contracts are taken; running ones are kept, and reports wait in memory until they can be written',
    )
    this.options.onChange?.(true)
  }

  /** What to write again once there is room: `rewrite` throws while it still can't write everything it holds. */
  onRecovery(name: string, rewrite: () => void): void {
    this.rewrites.set(name, rewrite)
  }

  /** Writes what waits and probes for room; when all of it fits, the disk is usable again. Returns whether it is. */
  retry(): boolean {
    if (this.fullSince === undefined) return true
    const probe = join(this.options.dir, '.space-probe')
    try {
      for (const rewrite of this.rewrites.values()) rewrite()
      writeFileSync(probe, Buffer.alloc(PROBE_BYTES))
    } catch (error) {
      if (!isOutOfSpace(error)) this.options.log.warn({dir: this.options.dir, err: describeError(error)}, 'the state disk: a write failed while retrying')
      return false
    } finally {
      rmSync(probe, {force: true})
    }
    const seconds = Math.round((Date.now() - this.fullSince) / 1000)
    this.fullSince = undefined
    this.options.log.info({dir: this.options.dir, free_bytes: freeBytes(this.options.dir), full_for_seconds: seconds}, 'the state disk has room again: what waited is written, new contracts are taken')
    this.options.onChange?.(false)
    for (const waiter of this.waiters.splice(0)) waiter()
    return true
  }

  /** Resolves when the disk has room (at once when it has), or when `signal` fires. */
  room(signal: AbortSignal): Promise<void> {
    if (this.fullSince === undefined || signal.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done)
        resolve()
      }
      this.waiters.push(done)
      signal.addEventListener('abort', done, {once: true})
    })
  }
}
