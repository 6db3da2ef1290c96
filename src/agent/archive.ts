import {closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync} from 'node:fs'
import {join} from 'node:path'

import {isHex} from '../core/hex.js'
import type {StateDisk} from './state-disk.js'

/**
 * The agent's archives of evidence (`usage/`, `health/` in the state dir): one JSON Lines file per contract, appended,
 * never rewritten, kept past what the outbox remembers so that a dispute that comes much later can still be answered,
 * and removed `[agent] archive_days` after the contract's last line. Not fsynced line by line (that was one fsync per
 * contract per round): a killed agent loses nothing written, the usage records are in the fsynced outbox until the
 * marketplace has them, and a machine that loses power loses at most the lines the kernel had not written back.
 */
export type ArchiveKind = 'usage' | 'health'
export const ARCHIVE_KINDS: readonly ArchiveKind[] = ['usage', 'health']

export function archiveFile(stateDir: string, kind: ArchiveKind, contractId: string): string | undefined {
  // Contract ids come from the marketplace: only the §6 shape may name a file.
  return isHex(contractId, 16) ? join(stateDir, kind, `${contractId}.jsonl`) : undefined
}

/** Appends the items, by contract, to the kind's archive files. */
export function appendToArchive<T extends {contract_id: string}>(stateDir: string, kind: ArchiveKind, items: readonly T[]): void {
  const byContract = new Map<string, T[]>()
  for (const item of items) byContract.set(item.contract_id, [...(byContract.get(item.contract_id) ?? []), item])
  for (const [contractId, contractItems] of byContract) {
    const file = archiveFile(stateDir, kind, contractId)
    if (!file) continue
    mkdirSync(join(stateDir, kind), {recursive: true, mode: 0o700})
    const fd = openSync(file, 'a+', 0o600)
    try {
      // A line cut short (a crash, a full disk) must not swallow the first item written after it.
      const text = Buffer.from((endsMidLine(fd) ? '\n' : '') + contractItems.map((item) => JSON.stringify(item) + '\n').join(''), 'utf8')
      for (let written = 0; written < text.length; ) written += writeSync(fd, text, written)
    } finally {
      closeSync(fd)
    }
  }
}

function endsMidLine(fd: number): boolean {
  const {size} = fstatSync(fd)
  if (size === 0) return false
  const last = Buffer.alloc(1)
  readSync(fd, last, 0, 1, size - 1)
  return last[0] !== 0x0a
}

/** The lines of one contract's archive file parsed by `parse` (undefined: skipped), with the count of those skipped. */
export function readArchive<T>(stateDir: string, kind: ArchiveKind, contractId: string, parse: (value: unknown) => T | undefined): {items: T[]; skipped: number} {
  const file = archiveFile(stateDir, kind, contractId)
  if (!file || !existsSync(file)) return {items: [], skipped: 0}
  const items: T[] = []
  let skipped = 0
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue
    let parsed: T | undefined
    try {
      parsed = parse(JSON.parse(line))
    } catch {
      parsed = undefined
    }
    if (parsed === undefined) skipped++
    else items.push(parsed)
  }
  return {items, skipped}
}

/**
 * Removes the archive files last written more than `maxAgeMs` ago (a contract's file is appended to while it runs, so
 * its age is the age of its last record). Returns what was removed.
 */
export function pruneArchives(stateDir: string, maxAgeMs: number, now = Date.now()): string[] {
  const removed: string[] = []
  for (const kind of ARCHIVE_KINDS) {
    const dir = join(stateDir, kind)
    if (!existsSync(dir)) continue
    for (const name of readdirSync(dir)) {
      if (!/^[0-9a-f]+\.jsonl$/.test(name)) continue
      const file = join(dir, name)
      if (now - statSync(file).mtimeMs > maxAgeMs) {
        rmSync(file, {force: true})
        removed.push(file)
      }
    }
  }
  return removed
}

/** An archive of a running agent: on a full disk, items wait in memory and are written once there is room. */
export class ContractArchive<T extends {contract_id: string}> {
  private readonly waiting: T[] = []

  constructor(
    private readonly stateDir: string,
    private readonly kind: ArchiveKind,
    private readonly disk?: StateDisk,
  ) {
    disk?.onRecovery(`${kind} archive`, () => this.flush())
  }

  add(items: readonly T[]): void {
    this.waiting.push(...items)
    try {
      this.flush()
    } catch (error) {
      if (!this.disk?.noteFailure(join(this.stateDir, this.kind), error)) throw error
    }
  }

  /** Writes what waits; throws while it does not fit (an item written twice is read once, by its id). */
  flush(): void {
    if (this.waiting.length === 0) return
    appendToArchive(this.stateDir, this.kind, this.waiting)
    this.waiting.length = 0
  }
}
