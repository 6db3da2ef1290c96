import {closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync} from 'node:fs'
import {join} from 'node:path'

import {isHex} from '../core/hex.js'
import {SignedUsageRecordSchema} from '../core/api/schemas.js'
import type {SignedUsageRecord} from '../core/signing.js'

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
    const fd = openSync(file, 'a', 0o600)
    try {
      writeSync(fd, contractRecords.map((record) => JSON.stringify(record) + '\n').join(''))
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
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
