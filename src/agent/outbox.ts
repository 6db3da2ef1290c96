import {appendFileSync, closeSync, existsSync, fdatasyncSync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync} from 'node:fs'
import {join} from 'node:path'
import {z} from 'zod'

import {ResultEnvelope} from '../core/api/job-schemas.js'
import {Instance, SignedUsageRecordSchema} from '../core/api/schemas.js'
import {fsyncDirectory, writeFileAtomic} from '../core/files.js'

/**
 * Reports to the marketplace, each made durable before it is sent and crossed off after a 2xx, so nothing the agent
 * did goes unreported across a crash or an outage. One append-only log: a report is a line appended and fdatasynced
 * (a file per report cost a temp file, two fsyncs, a rename and an unlink: ~0.6 ms of CPU each, three a contract); a
 * delivery is a line appended without a sync (a crash that loses it only sends an accepted report again, and every
 * report is idempotent: §6, §8, §12). The log is emptied when nothing waits, and rewritten when mostly crossed off.
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

const LogLine = z.union([z.object({add: OutboxEntry}), z.object({done: z.string().min(1)})])

export interface OutboxLoadResult {
  entries: OutboxEntry[]
  /** What did not parse, kept aside for a person (never sent, never blocking the queue): lines in `outbox.log.bad`, files as `*.bad`. */
  quarantined: string[]
}

const LOG_FILE = 'outbox.log'
/** A file per entry: the outbox of versions before the log, taken into the log when an agent opens it. */
const LEGACY_ENTRY_FILE = /^\d{16}-\d{6}\.json$/
/** The log is emptied (a truncation, cheap) once nothing waits and it is this large. */
const EMPTY_AFTER_BYTES = 64 * 1024
/** The log is written anew once it is this large and mostly crossed-off entries. */
const REWRITE_AFTER_BYTES = 1024 * 1024

/** The outbox's folder in an agent's state dir. */
export function outboxDir(stateDir: string): string {
  return join(stateDir, 'outbox')
}

interface Replayed {
  /** Entries not crossed off, with the length of the line that holds each. */
  pending: Map<string, {entry: OutboxEntry; bytes: number}>
  badLines: string[]
  /** The log ends in a line cut short (a crash mid-append): that report was never sent, since it is sent once written. */
  tornTail: boolean
  logBytes: number
  legacyFiles: string[]
  badLegacyFiles: string[]
}

function addLine(entry: OutboxEntry): string {
  return JSON.stringify({add: entry}) + '\n'
}

function parseLine(line: string): z.infer<typeof LogLine> | undefined {
  try {
    const parsed = LogLine.safeParse(JSON.parse(line))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

function parseLegacyFile(path: string): OutboxEntry | undefined {
  try {
    const parsed = OutboxEntry.safeParse(JSON.parse(readFileSync(path, 'utf8')))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

function replay(dir: string): Replayed {
  const result: Replayed = {pending: new Map(), badLines: [], tornTail: false, logBytes: 0, legacyFiles: [], badLegacyFiles: []}
  // An older version's files first: they were written before any line, and a line may cross one off.
  for (const name of readdirSync(dir).filter((file) => LEGACY_ENTRY_FILE.test(file)).sort()) {
    const path = join(dir, name)
    const entry = parseLegacyFile(path)
    if (!entry) result.badLegacyFiles.push(path)
    else {
      result.legacyFiles.push(path)
      result.pending.set(entry.id, {entry, bytes: Buffer.byteLength(addLine(entry))})
    }
  }
  const logPath = join(dir, LOG_FILE)
  const text = existsSync(logPath) ? readFileSync(logPath, 'utf8') : ''
  result.logBytes = Buffer.byteLength(text)
  const lines = text.split('\n')
  const tail = lines.pop() ?? ''
  if (tail !== '') result.tornTail = true
  for (const line of lines) {
    if (line === '') continue
    const parsed = parseLine(line)
    if (!parsed) result.badLines.push(line)
    else if ('add' in parsed) result.pending.set(parsed.add.id, {entry: parsed.add, bytes: Buffer.byteLength(line) + 1})
    else result.pending.delete(parsed.done)
  }
  return result
}

function oldestFirst(entries: Iterable<{entry: OutboxEntry}>): OutboxEntry[] {
  return [...entries].map(({entry}) => entry).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/** The entries waiting in a state dir's outbox, read without changing anything there; what does not parse is skipped. */
export function readOutbox(stateDir: string): OutboxEntry[] {
  const dir = outboxDir(stateDir)
  if (!existsSync(dir)) return []
  return oldestFirst(replay(dir).pending.values())
}

export class Outbox {
  readonly dir: string
  /** The log's file. */
  readonly path: string
  private fd: number | undefined
  /** The log's length: where a write cut short by a full disk is cut back to. */
  private logBytes = 0
  /** The log ends mid-line and could not be cut back: the next line starts on a new one. */
  private torn = false
  private readonly pending = new Map<string, {entry: OutboxEntry; bytes: number}>()
  private pendingBytes = 0
  private readonly quarantined: string[] = []
  private takenUp = false
  private sequence = 0
  private lastMillis = 0

  constructor(stateDir: string) {
    this.dir = outboxDir(stateDir)
    this.path = join(this.dir, LOG_FILE)
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
    this.takeUp()
    return {id: this.nextId(now), created_at: now, report}
  }

  /** Writes the entry durably (all of it or, after a crash or on a full disk, none that a restart would take up). */
  write(entry: OutboxEntry): void {
    const line = addLine(entry)
    this.append(line, true)
    const bytes = Buffer.byteLength(line)
    this.pendingBytes += bytes - (this.pending.get(entry.id)?.bytes ?? 0)
    this.pending.set(entry.id, {entry, bytes})
  }

  /** Every entry still to send, oldest first, and what did not parse when the log was opened. */
  load(): OutboxLoadResult {
    this.takeUp()
    return {entries: oldestFirst(this.pending.values()), quarantined: this.quarantined}
  }

  /** Crosses the entry off, without a sync: a removal a crash undoes only sends an accepted report again. */
  remove(entry: OutboxEntry): void {
    this.takeUp()
    const held = this.pending.get(entry.id)
    if (!held) return
    this.pending.delete(entry.id)
    this.pendingBytes -= held.bytes
    try {
      this.append(JSON.stringify({done: entry.id}) + '\n', false)
    } catch {
      // A full disk: the entry stays in the log and a restart sends it again, which the marketplace answers the same.
    }
    this.compactIfWorthIt()
  }

  depth(): number {
    this.takeUp()
    return this.pending.size
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
  }

  /**
   * On first use, takes up what the log holds (and the files an older version left), sets aside what does not parse,
   * and writes the log back compacted when there was anything to drop. On a full disk it takes the log as it is:
   * replaying it again gives the same entries.
   */
  private takeUp(): void {
    if (this.takenUp) return
    this.takenUp = true
    const replayed = replay(this.dir)
    for (const [id, held] of replayed.pending) {
      this.pending.set(id, held)
      this.pendingBytes += held.bytes
      // New ids must sort after every loaded one, even if the clock went back or this is the same millisecond.
      this.lastMillis = Math.max(this.lastMillis, held.entry.created_at + 1)
    }
    for (const path of replayed.badLegacyFiles) {
      renameSync(path, `${path}.bad`)
      this.quarantined.push(`${path}.bad`)
    }
    const badLinesKept = replayed.badLines.length === 0 || this.keepAside(replayed.badLines)
    const untidy = replayed.logBytes !== this.pendingBytes || replayed.legacyFiles.length > 0
    const rewritten = untidy && badLinesKept && this.rewrite()
    if (rewritten) for (const path of replayed.legacyFiles) rmSync(path, {force: true})
    this.torn = replayed.tornTail && !rewritten
  }

  /** The log open for appending (opened on first write: creating it may meet a full disk, which the caller handles). */
  private openLog(): number {
    this.takeUp()
    if (this.fd !== undefined) return this.fd
    const fresh = !existsSync(this.path)
    const fd = openSync(this.path, 'a', 0o600)
    if (fresh) fsyncDirectory(this.dir)
    this.logBytes = fstatSync(fd).size
    this.fd = fd
    return fd
  }

  /** Lines that do not parse, kept in `outbox.log.bad` for a person; false when the disk refused them. */
  private keepAside(lines: string[]): boolean {
    const badPath = `${this.path}.bad`
    try {
      appendFileSync(badPath, lines.map((line) => `${line}\n`).join(''), {mode: 0o600})
    } catch {
      return false
    }
    this.quarantined.push(badPath)
    return true
  }

  /** Writes the log anew with only the entries still to send; false when the disk refused it (the old log stays). */
  private rewrite(): boolean {
    try {
      writeFileAtomic(this.path, oldestFirst(this.pending.values()).map(addLine).join(''), 0o600)
      return true
    } catch {
      return false
    }
  }

  private append(line: string, sync: boolean): void {
    const fd = this.openLog()
    const text = Buffer.from((this.torn ? '\n' : '') + line, 'utf8')
    let written = 0
    try {
      while (written < text.length) written += writeSync(fd, text, written)
      if (sync) fdatasyncSync(fd)
    } catch (error) {
      this.cutBack(fd, written)
      throw error
    }
    this.torn = false
    this.logBytes += text.length
  }

  /** Takes a write that failed back out of the log, so that no later line is glued to half of it. */
  private cutBack(fd: number, written: number): void {
    if (written === 0) return
    try {
      ftruncateSync(fd, this.logBytes)
    } catch {
      this.torn = true
      this.logBytes = fstatSync(fd).size
    }
  }

  private compactIfWorthIt(): void {
    if (this.fd === undefined) return
    if (this.pending.size === 0 && this.logBytes >= EMPTY_AFTER_BYTES) {
      try {
        ftruncateSync(this.fd, 0)
        this.logBytes = 0
        this.torn = false
      } catch {
        // The log stays as it is, which replays the same; it is emptied on a later removal.
      }
    } else if (this.logBytes >= REWRITE_AFTER_BYTES && this.logBytes > 4 * this.pendingBytes && this.rewrite()) {
      // The open descriptor is the old file's: the next write opens the new one.
      this.close()
      this.torn = false
    }
  }
}
