import {SignedUsageRecordSchema} from '../core/api/schemas.js'
import type {SignedUsageRecord} from '../core/signing.js'
import {appendToArchive, ContractArchive, readArchive} from './archive.js'
import type {StateDisk} from './state-disk.js'

/**
 * Every signed usage record the agent queued, kept per contract in `<state_dir>/usage/<contract_id>.jsonl`. The outbox
 * forgets a record once the marketplace accepts it; a dispute can come much later, and the records themselves (each
 * verifiable on its own, PROTOCOL §7) are the provider's evidence. A record queued twice after a crash is listed twice
 * with the same record_id; readers keep one.
 */

export function archiveUsageRecords(stateDir: string, records: readonly SignedUsageRecord[]): void {
  appendToArchive(stateDir, 'usage', records)
}

/** The usage archive of a running agent: on a full disk, records wait in memory and are written once there is room. */
export class UsageArchive extends ContractArchive<SignedUsageRecord> {
  constructor(stateDir: string, disk?: StateDisk) {
    super(stateDir, 'usage', disk)
  }
}

/** The archived records of one contract, oldest first, one per record_id; lines that don't parse are counted. */
export function readArchivedUsageRecords(stateDir: string, contractId: string): {records: SignedUsageRecord[]; skipped: number} {
  const read = readArchive(stateDir, 'usage', contractId, (value) => {
    const parsed = SignedUsageRecordSchema.safeParse(value)
    return parsed.success && parsed.data.contract_id === contractId ? parsed.data : undefined
  })
  const byId = new Map<string, SignedUsageRecord>()
  for (const record of read.items) byId.set(record.record_id, record)
  return {records: [...byId.values()], skipped: read.skipped}
}
