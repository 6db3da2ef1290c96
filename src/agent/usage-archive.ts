import {closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, writeSync} from 'node:fs'
import {join} from 'node:path'

import {isHex} from '../core/hex.js'
import {SignedUsageRecordSchema} from '../core/api/schemas.js'
import type {SignedUsageRecord} from '../core/signing.js'
import type {StateDisk} from './state-disk.js'

/**
 * Every signed usage record the agent queued, kept per contract in `<state_dir>/usage/<contract_id>.jsonl`. The outbox
 * forgets a record once the marketplace accepts it; a dispute can come much later, and the records themselves (each
 * verifiable on its own, PROTOCOL §7) are the provider's evidence. A record queued twice after a crash is listed twice
 * with the same record_id; readers keep one.
 */

function archiveFile(stateDir: string, contractId: string): string | undefined {
  // Contract ids come from the marketplace: only the §6 shape may name a file.
  return isHex(contractId, 16) ? join(stateDir, 'usage', `${contractId}.jsonl`) : undefined
}

export function archiveUsageRecords(stateDir: string, records: readonly SignedUsageRecord[]): void {
  const byContract = new Map<string, SignedUsageRecord[]>()
  for (const record of records) byContract.set(record.contract_id, [...(byContract.get(record.contract_id) ?? []), record])
  for (const [contractId, contractRecords] of byContract) {
    const file = archiveFile(stateDir, contractId)
    if (!file) continue
    mkdirSync(join(stateDir, 'usage'), {recursive: true, mode: 0o700})
    const fd = openSync(file, 'a+', 0o600)
    try {
      // A line cut short (a crash, a full disk) must not swallow the first record written after it.
      const text = Buffer.from((endsMidLine(fd) ? '\n' : '') + contractRecords.map((record) => JSON.stringify(record) + '\n').join(''), 'utf8')
      for (let written = 0; written < text.length; ) written += writeSync(fd, text, written)
      fsyncSync(fd)
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

/** The archive of a running agent: on a full disk, records wait in memory and are written once there is room. */
export class UsageArchive {
  private readonly waiting: SignedUsageRecord[] = []

  constructor(
    private readonly stateDir: string,
    private readonly disk?: StateDisk,
  ) {
    disk?.onRecovery('usage archive', () => this.flush())
  }

  add(records: readonly SignedUsageRecord[]): void {
    this.waiting.push(...records)
    try {
      this.flush()
    } catch (error) {
      if (!this.disk?.noteFailure(join(this.stateDir, 'usage'), error)) throw error
    }
  }

  /** Writes what waits; throws while it does not fit (a record written twice is read once, by record_id). */
  flush(): void {
    if (this.waiting.length === 0) return
    archiveUsageRecords(this.stateDir, this.waiting)
    this.waiting.length = 0
  }
}

/** The archived records of one contract, oldest first, one per record_id; lines that don't parse are counted. */
export function readArchivedUsageRecords(stateDir: string, contractId: string): {records: SignedUsageRecord[]; skipped: number} {
  const file = archiveFile(stateDir, contractId)
  if (!file || !existsSync(file)) return {records: [], skipped: 0}
  const byId = new Map<string, SignedUsageRecord>()
  let skipped = 0
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue
    try {
      const parsed = SignedUsageRecordSchema.safeParse(JSON.parse(line))
      if (parsed.success && parsed.data.contract_id === contractId) byId.set(parsed.data.record_id, parsed.data)
      else skipped++
    } catch {
      skipped++
    }
  }
  return {records: [...byId.values()], skipped}
}
