import {existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {z} from 'zod'

import {ResultEnvelope} from '../core/api/job-schemas.js'
import {Instance, SignedUsageRecordSchema} from '../core/api/schemas.js'
import {fsyncDirectory, writeFileAtomic} from '../core/files.js'

/**
 * Reports to the marketplace, each written to its own file before it is sent and removed after a 2xx, so nothing the
 * agent did goes unreported across a crash or an outage. Files are named so that they sort in the order they were made.
 */

export const Report = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('provisioning'),
    contract_id: z.string().min(1),
    status: z.enum(['provisioned', 'provisioning_failed']),
    instance: Instance.optional(),
    error: z.string().optional(),
    retry_possible: z.boolean().optional(),
    /** Release the contract lock once the report is accepted. */
    unlock: z.boolean(),
  }),
  z.object({kind: z.literal('terminated'), contract_id: z.string().min(1)}),
  z.object({kind: z.literal('usage'), records: z.array(SignedUsageRecordSchema).min(1)}),
  /** §12: a lease's signed result; posting it again gets the same verdict. */
  z.object({kind: z.literal('result'), lease_id: z.string().min(1), job_id: z.string().min(1), envelope: ResultEnvelope}),
])
export type Report = z.infer<typeof Report>

export const OutboxEntry = z.object({id: z.string().min(1), created_at: z.number().int(), report: Report})
export type OutboxEntry = z.infer<typeof OutboxEntry>

export interface OutboxLoadResult {
  entries: OutboxEntry[]
  /** Files that did not parse, moved aside as `*.bad` so they are kept for a person but never block the queue. */
  quarantined: string[]
}

const ENTRY_FILE = /^\d{16}-\d{6}\.json$/

/** The outbox's folder in an agent's state dir. */
export function outboxDir(stateDir: string): string {
  return join(stateDir, 'outbox')
}

/** The entry files of an outbox folder, oldest first. */
function entryFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => ENTRY_FILE.test(name))
    .sort()
    .map((name) => join(dir, name))
}

function parseEntryFile(path: string): OutboxEntry | undefined {
  try {
    const parsed = OutboxEntry.safeParse(JSON.parse(readFileSync(path, 'utf8')))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

/** The entries waiting in a state dir's outbox, read without changing anything there; a file that does not parse is skipped. */
export function readOutbox(stateDir: string): OutboxEntry[] {
  const dir = outboxDir(stateDir)
  if (!existsSync(dir)) return []
  return entryFiles(dir).flatMap((path) => parseEntryFile(path) ?? [])
}

export class Outbox {
  readonly dir: string
  private sequence = 0
  private lastMillis = 0

  constructor(stateDir: string) {
    this.dir = outboxDir(stateDir)
    mkdirSync(this.dir, {recursive: true, mode: 0o700})
  }

  /** A new entry id that sorts after every earlier one, across restarts (time first, then a counter). */
  private nextId(now: number): string {
    if (now <= this.lastMillis) now = this.lastMillis
    else this.sequence = 0
    this.lastMillis = now
    this.sequence++
    return `${String(now).padStart(16, '0')}-${String(this.sequence).padStart(6, '0')}`
  }

  /** Writes the report durably and returns its entry; only then may it be sent. */
  add(report: Report, now = Date.now()): OutboxEntry {
    const entry = this.entry(report, now)
    this.write(entry)
    return entry
  }

  /** A new entry for the report, not written yet. */
  entry(report: Report, now = Date.now()): OutboxEntry {
    return {id: this.nextId(now), created_at: now, report}
  }

  /** Writes the entry's file (all of it or, after a crash or a full disk, none of it). */
  write(entry: OutboxEntry): void {
    writeFileAtomic(this.path(entry), JSON.stringify(entry) + '\n', 0o600)
  }

  path(entry: OutboxEntry): string {
    return join(this.dir, `${entry.id}.json`)
  }

  /** Every entry still to send, oldest first. */
  load(): OutboxLoadResult {
    const entries: OutboxEntry[] = []
    const quarantined: string[] = []
    for (const path of entryFiles(this.dir)) {
      const entry = parseEntryFile(path)
      if (entry) {
        entries.push(entry)
        // New ids must sort after every loaded one, even if the clock went back or this is the same millisecond.
        this.lastMillis = Math.max(this.lastMillis, entry.created_at + 1)
      } else {
        renameSync(path, `${path}.bad`)
        quarantined.push(`${path}.bad`)
      }
    }
    return {entries, quarantined}
  }

  remove(entry: OutboxEntry): void {
    rmSync(this.path(entry), {force: true})
    fsyncDirectory(this.dir)
  }

  depth(): number {
    return entryFiles(this.dir).length
  }
}
