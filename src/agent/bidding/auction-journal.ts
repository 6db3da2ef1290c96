import {chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {z} from 'zod'

import {writeFileAtomic} from '../../core/files.js'

/**
 * The auction engine's own journal: one JSON object a line, appended and fsynced before the engine acts on it. The
 * commitment's fee and salt are written before the commitment is sent, so an agent killed between its commitment
 * and its reveal still reveals after a restart (an unrevealed commitment counts against the SLA, §13). The file holds
 * salts of open auctions, so it is 0600.
 */

export function auctionJournalPath(stateDir: string): string {
  return join(stateDir, 'auction-journal.jsonl')
}

const at = z.number().int().nonnegative()
const jobId = z.string().min(1)

export const AuctionJournalEntry = z.discriminatedUnion('event', [
  z.object({
    event: z.literal('commit_prepared'),
    at,
    job_id: jobId,
    kind: z.string(),
    fee: z.string(),
    salt: z.string().regex(/^[0-9a-f]{64}$/),
    commitment: z.string(),
    bid_closes_at: at,
    reveal_closes_at: at,
    deadline: at,
    estimate_seconds: z.number().nonnegative(),
  }),
  z.object({event: z.literal('committed'), at, job_id: jobId}),
  z.object({event: z.literal('revealed'), at, job_id: jobId}),
  z.object({event: z.literal('won'), at, job_id: jobId, clearing_fee: z.string()}),
  z.object({event: z.literal('leased'), at, job_id: jobId, lease_id: z.string()}),
  /** The end of a job for this engine: lost, missed, abandoned, done (ran), lease refused. */
  z.object({event: z.literal('closed'), at, job_id: jobId, outcome: z.string(), reason: z.string().optional()}),
])
export type AuctionJournalEntry = z.infer<typeof AuctionJournalEntry>
type NewEntry = AuctionJournalEntry extends infer Entry ? (Entry extends AuctionJournalEntry ? Omit<Entry, 'at'> : never) : never

export type AuctionStage = 'prepared' | 'committed' | 'revealed' | 'won' | 'leased' | 'closed'

/** A job's auction as the journal tells it: the latest stage and what it was committed with. */
export interface AuctionRecord {
  jobId: string
  kind: string
  fee: string
  salt: string
  commitment: string
  bidClosesAt: number
  revealClosesAt: number
  deadline: number
  estimateSeconds: number
  stage: AuctionStage
  /** Whether the marketplace acknowledged the commitment (a prepared one may or may not have arrived). */
  acknowledged: boolean
  clearingFee?: string
  leaseId?: string
  outcome?: string
}

/** Entries past this many lines, when most are of closed jobs, are compacted away. */
const COMPACT_AFTER_LINES = 5000

export class AuctionJournal {
  private readonly records = new Map<string, AuctionRecord>()
  private lines = 0

  constructor(
    private readonly path: string,
    private readonly now: () => number = Date.now,
  ) {
    mkdirSync(dirname(path), {recursive: true})
    for (const entry of readAuctionJournal(path)) applyEntry(this.records, entry)
    // Started afresh: only what is still open is carried over.
    this.compact()
  }

  /** Records not yet closed: what a restarted engine takes up again. */
  open(): AuctionRecord[] {
    return [...this.records.values()].filter((record) => record.stage !== 'closed')
  }

  get(jobId: string): AuctionRecord | undefined {
    return this.records.get(jobId)
  }

  /**
   * Appends; a commitment is fsynced too before the caller sends it (its salt can't be had again). The later steps
   * are not: each one lost in a crash is done again after the restart, and the marketplace takes a repeat (the same
   * reveal again is a no-op, a lease taken already is found among the active leases, an outcome is asked again).
   */
  append(entry: NewEntry): AuctionRecord | undefined {
    const full = {...entry, at: this.now()} as AuctionJournalEntry
    const fd = openSync(this.path, 'a', 0o600)
    try {
      writeSync(fd, JSON.stringify(full) + '\n')
      if (full.event === 'commit_prepared') fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    this.lines++
    applyEntry(this.records, full)
    if (this.lines > COMPACT_AFTER_LINES && this.open().length * 4 < this.records.size) this.compact()
    return this.records.get(entry.job_id)
  }

  /** Rewrites the file with the open records alone (atomically), and forgets the closed ones. */
  private compact(): void {
    for (const [id, record] of this.records) if (record.stage === 'closed') this.records.delete(id)
    const lines = [...this.records.values()].flatMap((record) => entriesOf(record, this.now()).map((entry) => JSON.stringify(entry)))
    writeFileAtomic(this.path, lines.length === 0 ? '' : lines.join('\n') + '\n', 0o600)
    chmodSync(this.path, 0o600)
    this.lines = lines.length
  }
}

/** The entries of a journal file, in order; a line cut short by a crash is skipped (the entries before it stand). Reads only. */
export function readAuctionJournal(path: string): AuctionJournalEntry[] {
  if (!existsSync(path)) return []
  const entries: AuctionJournalEntry[] = []
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue
    try {
      const parsed = AuctionJournalEntry.safeParse(JSON.parse(line))
      if (parsed.success) entries.push(parsed.data)
    } catch {
      continue
    }
  }
  return entries
}

/** The records a journal file tells, by job, without touching the file (for tests and tools beside a running engine). */
export function readAuctionRecords(path: string): Map<string, AuctionRecord> {
  const records = new Map<string, AuctionRecord>()
  for (const entry of readAuctionJournal(path)) applyEntry(records, entry)
  return records
}

function applyEntry(records: Map<string, AuctionRecord>, entry: AuctionJournalEntry): void {
  if (entry.event === 'commit_prepared') {
    records.set(entry.job_id, {
      jobId: entry.job_id,
      kind: entry.kind,
      fee: entry.fee,
      salt: entry.salt,
      commitment: entry.commitment,
      bidClosesAt: entry.bid_closes_at,
      revealClosesAt: entry.reveal_closes_at,
      deadline: entry.deadline,
      estimateSeconds: entry.estimate_seconds,
      stage: 'prepared',
      acknowledged: false,
    })
    return
  }
  const record = records.get(entry.job_id)
  if (!record) return
  switch (entry.event) {
    case 'committed':
      record.acknowledged = true
      record.stage = 'committed'
      break
    case 'revealed':
      record.stage = 'revealed'
      break
    case 'won':
      record.stage = 'won'
      record.clearingFee = entry.clearing_fee
      break
    case 'leased':
      record.stage = 'leased'
      record.leaseId = entry.lease_id
      break
    case 'closed':
      record.stage = 'closed'
      record.outcome = entry.outcome
      break
  }
}

/** The entries that rebuild a record. */
function entriesOf(record: AuctionRecord, at: number): AuctionJournalEntry[] {
  const entries: AuctionJournalEntry[] = [
    {
      event: 'commit_prepared',
      at,
      job_id: record.jobId,
      kind: record.kind,
      fee: record.fee,
      salt: record.salt,
      commitment: record.commitment,
      bid_closes_at: record.bidClosesAt,
      reveal_closes_at: record.revealClosesAt,
      deadline: record.deadline,
      estimate_seconds: record.estimateSeconds,
    },
  ]
  const order: AuctionStage[] = ['prepared', 'committed', 'revealed', 'won', 'leased']
  const reached = order.indexOf(record.stage)
  if (record.acknowledged) entries.push({event: 'committed', at, job_id: record.jobId})
  if (reached >= order.indexOf('revealed')) entries.push({event: 'revealed', at, job_id: record.jobId})
  if (reached >= order.indexOf('won')) entries.push({event: 'won', at, job_id: record.jobId, clearing_fee: record.clearingFee ?? '0'})
  if (reached >= order.indexOf('leased') && record.leaseId) entries.push({event: 'leased', at, job_id: record.jobId, lease_id: record.leaseId})
  return entries
}
