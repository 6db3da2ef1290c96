import type {HealthCheck} from '../core/api/provider.js'
import type {SignedUsageRecord} from '../core/signing.js'
import {readArchivedHealthChecks} from './health-archive.js'
import {journalPath, readJournal, type JournalEntry} from './journal.js'
import {readOutbox} from './outbox.js'
import {readArchivedUsageRecords} from './usage-archive.js'

export type {JournalEntry} from './journal.js'

/** What an agent's state dir holds about one contract. */
export interface ContractRecord {
  /** The journal's entries about the contract, oldest first. */
  events: JournalEntry[]
  /** Every signed usage record queued for it (the archive, then the outbox's unsent ones), once per record_id; signatures unchecked. */
  usageRecords: SignedUsageRecord[]
  /** The health checks the agent made of its instance (the health archive), oldest first. */
  healthChecks: HealthCheck[]
  /** Journal lines and archived usage lines that did not parse, left out. */
  skippedJournalLines: number
  skippedUsageLines: number
  skippedHealthLines: number
}

/**
 * The agent's own record of a contract, read from its state dir without changing anything there (the agent may be
 * running): for `dispute evidence --auto`, which should not need to know how the agent lays out its files.
 */
export function readContractRecord(stateDir: string, contractId: string): ContractRecord {
  const journal = readJournal(journalPath(stateDir))
  const events = journal.entries.filter((entry) => 'contract_id' in entry && entry.contract_id === contractId)
  const archived = readArchivedUsageRecords(stateDir, contractId)
  const pending = readOutbox(stateDir).flatMap(({report}) => (report.kind === 'usage' ? report.records.filter((record) => record.contract_id === contractId) : []))
  const byId = new Map<string, SignedUsageRecord>()
  for (const record of [...archived.records, ...pending]) byId.set(record.record_id, record)
  const health = readArchivedHealthChecks(stateDir, contractId)
  return {
    events,
    usageRecords: [...byId.values()],
    healthChecks: health.checks,
    skippedJournalLines: journal.skipped,
    skippedUsageLines: archived.skipped,
    skippedHealthLines: health.skipped,
  }
}
