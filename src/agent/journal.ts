import {closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {z} from 'zod'

import {Job, Lease, ResultEnvelope} from '../core/api/job-schemas.js'
import {Contract} from '../core/api/schemas.js'
import type {StateDisk} from './state-disk.js'

/**
 * What the agent did, one JSON object a line, appended and fsynced before the agent acts on it, so a restart (even after
 * SIGKILL) knows which contracts it was working on; lines no restart acts on are fsynced with the next (see note()).
 * It never holds credentials: instances are named by external id.
 */

/** The journal's file in an agent's state dir. */
export function journalPath(stateDir: string): string {
  return join(stateDir, 'journal.jsonl')
}

const at = z.number().int().nonnegative()
const contractId = z.string().min(1)

export const JournalEntry = z.discriminatedUnion('event', [
  /** Written before the lock is requested, so a crash right after locking still resumes the contract. */
  z.object({event: z.literal('provision_started'), at, contract_id: contractId, contract: Contract}),
  z.object({event: z.literal('instance_ready'), at, contract_id: contractId, external_id: z.string(), adopted: z.boolean()}),
  z.object({
    event: z.literal('contract_done'),
    at,
    contract_id: contractId,
    outcome: z.enum(['provisioned', 'failed', 'skipped', 'interrupted']),
    reason: z.string().optional(),
  }),
  z.object({event: z.literal('report_queued'), at, entry_id: z.string(), kind: z.string(), contract_id: contractId.optional(), status: z.string().optional()}),
  z.object({
    event: z.literal('report_delivered'),
    at,
    entry_id: z.string(),
    kind: z.string(),
    contract_id: contractId.optional(),
    status: z.string().optional(),
    /** `state`: the answer was lost or refused a repeat, and the marketplace's state showed the report's effect. */
    confirmed_by: z.literal('state').optional(),
  }),
  z.object({event: z.literal('report_rejected'), at, entry_id: z.string(), kind: z.string(), contract_id: contractId.optional(), reason: z.string()}),
  z.object({event: z.literal('instance_terminated'), at, external_id: z.string(), contract_id: contractId.optional(), reason: z.string()}),
  /** The end of the last period queued for each contract, one entry per usage round. */
  z.object({event: z.literal('usage_queued'), at, periods: z.record(contractId, at)}),
  z.object({event: z.literal('orphan_found'), at, external_id: z.string(), name: z.string()}),
  /** Devices given to a contract (`contract:<id>`) or a job (`job:<id>`), written before the holder uses them. */
  z.object({event: z.literal('gpu_allocated'), at, holder: z.string().min(1), devices: z.array(z.string().min(1)).min(1)}),
  z.object({event: z.literal('gpu_released'), at, holder: z.string().min(1)}),
  /** §12: a lease granted, with its job, written as soon as the answer is in (a restart also finds it in `leases?status=active`). */
  z.object({event: z.literal('lease_taken'), at, lease_id: z.string().min(1), lease: Lease, job: Job}),
  /**
   * The signed result of a lease, written before it is submitted: a restart resubmits these very bytes, so a lease's
   * result is built once. `output_file`: where an output too large to go inline is kept until it is uploaded.
   */
  z.object({event: z.literal('result_signed'), at, lease_id: z.string().min(1), envelope: ResultEnvelope, output_file: z.string().optional()}),
  z.object({
    event: z.literal('lease_done'),
    at,
    lease_id: z.string().min(1),
    job_id: z.string().min(1),
    outcome: z.enum(['accepted', 'rejected', 'failed', 'expired', 'refused']),
    reason: z.string().optional(),
    reward: z.string().optional(),
  }),
])
export type JournalEntry = z.infer<typeof JournalEntry>

/** A journal entry as written: `at` is filled in by append(). */
export type NewJournalEntry = JournalEntry extends infer Entry ? (Entry extends JournalEntry ? Omit<Entry, 'at'> : never) : never

export interface JournalReadResult {
  entries: JournalEntry[]
  /** Lines that did not parse: a torn last line after a crash, or damage. */
  skipped: number
}

/** Reads a journal file; a line cut short by a crash is skipped, not fatal. */
export function readJournal(path: string): JournalReadResult {
  if (!existsSync(path)) return {entries: [], skipped: 0}
  const entries: JournalEntry[] = []
  let skipped = 0
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue
    try {
      const parsed = JournalEntry.safeParse(JSON.parse(line))
      if (parsed.success) entries.push(parsed.data)
      else skipped++
    } catch {
      skipped++
    }
  }
  return {entries, skipped}
}

/** The longest a noted line waits for its fsync. */
const SYNC_AFTER_MS = 1000

export class Journal {
  private fd: number | undefined
  /** Lines not written yet (the disk was full), oldest first: they go out before any newer one. */
  private readonly backlog: string[] = []
  /** The file ends mid-line (a crash, or a write cut short by a full disk): the next line starts on a new one. */
  private torn: boolean
  /** Lines written since the last fsync. */
  private unsynced = false
  private syncTimer: NodeJS.Timeout | undefined

  /** With `disk`, a full disk keeps entries in memory (see StateDisk) instead of throwing. */
  constructor(
    readonly path: string,
    private readonly disk?: StateDisk,
  ) {
    mkdirSync(dirname(path), {recursive: true, mode: 0o700})
    this.fd = openSync(path, 'a', 0o600)
    this.torn = needsNewline(path)
    disk?.onRecovery('journal', () => this.flush())
  }

  /** Writes the entry and fsyncs: for what the agent acts on after a restart (and everything written before it). */
  append(entry: NewJournalEntry, now = Date.now()): void {
    this.write(entry, now, true)
  }

  /**
   * Writes the entry, made durable by the next append() or within SYNC_AFTER_MS: for the record of what happened
   * (reports queued and delivered, contracts done) that no restart acts on. A killed agent loses none of it (it is in
   * the page cache); only a machine that loses power may lose the last second's lines.
   */
  note(entry: NewJournalEntry, now = Date.now()): void {
    this.write(entry, now, false)
  }

  private write(entry: NewJournalEntry, now: number, sync: boolean): void {
    if (this.fd === undefined) throw new Error(`journal ${this.path} is closed`)
    this.backlog.push(JSON.stringify({...entry, at: now}) + '\n')
    try {
      this.flush(sync)
    } catch (error) {
      if (!this.disk?.noteFailure(this.path, error)) throw error
    }
  }

  /** Entries kept in memory because the disk was full. */
  get waiting(): number {
    return this.backlog.length
  }

  /** Writes the lines that wait, in order, and fsyncs; throws when one still does not fit (it stays first in line). */
  flush(sync = true): void {
    const fd = this.fd
    if (fd === undefined) return
    while (this.backlog.length > 0) {
      const text = Buffer.from((this.torn ? '\n' : '') + this.backlog[0], 'utf8')
      let written = 0
      try {
        while (written < text.length) written += writeSync(fd, text, written)
      } catch (error) {
        if (written > 0) this.torn = true
        throw error
      }
      this.torn = false
      this.unsynced = true
      this.backlog.shift()
    }
    if (sync) this.sync()
    else this.syncTimer ??= setTimeout(() => {
      try {
        this.sync()
      } catch {
        // Still unsynced: the next append() fsyncs again, and throws there.
      }
    }, SYNC_AFTER_MS).unref()
  }

  private sync(): void {
    clearTimeout(this.syncTimer)
    this.syncTimer = undefined
    if (!this.unsynced || this.fd === undefined) return
    fsyncSync(this.fd)
    this.unsynced = false
  }

  close(): void {
    if (this.fd !== undefined) {
      // A last try; what still does not fit is lost with the process, and the next run redoes that work idempotently.
      try {
        this.flush()
      } catch {
        // The disk is still full.
      }
      clearTimeout(this.syncTimer)
      closeSync(this.fd)
    }
    this.fd = undefined
  }
}

function needsNewline(path: string): boolean {
  const text = readFileSync(path)
  return text.length > 0 && text[text.length - 1] !== 0x0a
}

/** What a restarted agent needs from its journal. */
export interface JournalState {
  /** Contracts started and never finished, in the order they were started. */
  unfinished: Contract[]
  /** When each contract's instance first became ready here (usage is billed from then). */
  readyAt: Map<string, number>
  /** The end of the last usage period queued for each contract. */
  usageReportedUntil: Map<string, number>
  /** When this agent terminated each contract's instance (the first time): where its last usage period ends. */
  terminatedAt: Map<string, number>
  /** The GPUs each holder has and has not released. */
  gpus: Map<string, string[]>
  /** §12 leases taken and not done, by lease id, with their signed result once built. */
  leases: Map<string, JournalLease>
}

export interface JournalLease {
  lease: Lease
  job: Job
  envelope?: ResultEnvelope
  outputFile?: string
}

/**
 * An instance is ready: billing starts the first time it was (a resumed run finding it again does not move that),
 * or anew after an earlier instance of the contract was terminated (a failed attempt, retried).
 */
export function noteReady(state: Pick<JournalState, 'readyAt' | 'terminatedAt'>, contractId: string, at: number): void {
  if (state.readyAt.has(contractId) && !state.terminatedAt.has(contractId)) return
  state.readyAt.set(contractId, at)
  state.terminatedAt.delete(contractId)
}

export function journalState(entries: readonly JournalEntry[]): JournalState {
  const started = new Map<string, Contract>()
  const readyAt = new Map<string, number>()
  const usageReportedUntil = new Map<string, number>()
  const terminatedAt = new Map<string, number>()
  const gpus = new Map<string, string[]>()
  const leases = new Map<string, JournalLease>()
  for (const entry of entries) {
    switch (entry.event) {
      case 'provision_started':
        started.delete(entry.contract_id)
        started.set(entry.contract_id, entry.contract)
        break
      case 'instance_ready':
        noteReady({readyAt, terminatedAt}, entry.contract_id, entry.at)
        break
      case 'contract_done':
        started.delete(entry.contract_id)
        break
      case 'usage_queued':
        for (const [id, end] of Object.entries(entry.periods)) usageReportedUntil.set(id, Math.max(end, usageReportedUntil.get(id) ?? 0))
        break
      case 'instance_terminated':
        if (entry.contract_id) {
          if (!terminatedAt.has(entry.contract_id)) terminatedAt.set(entry.contract_id, entry.at)
          started.delete(entry.contract_id)
        }
        break
      case 'gpu_allocated':
        gpus.set(entry.holder, entry.devices)
        break
      case 'gpu_released':
        gpus.delete(entry.holder)
        break
      case 'lease_taken':
        leases.set(entry.lease_id, {lease: entry.lease, job: entry.job})
        break
      case 'result_signed': {
        const taken = leases.get(entry.lease_id)
        if (taken) leases.set(entry.lease_id, {...taken, envelope: entry.envelope, ...(entry.output_file ? {outputFile: entry.output_file} : {})})
        break
      }
      case 'lease_done':
        leases.delete(entry.lease_id)
        break
      default:
        break
    }
  }
  return {unfinished: [...started.values()], readyAt, usageReportedUntil, terminatedAt, gpus, leases}
}
