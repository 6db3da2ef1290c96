import {ApiError} from '../core/api/api-error.js'
import type {Verdict} from '../core/api/job-schemas.js'
import {MAX_BATCH, type ProviderApi} from '../core/api/provider.js'
import type {SignedResultEnvelope} from '../core/signing.js'
import {describeError} from '../core/errors.js'
import {Backoff, pause} from './backoff.js'
import type {Journal} from './journal.js'
import type {AgentLog} from './logger.js'
import type {Outbox, OutboxEntry, Report} from './outbox.js'
import type {StateDisk} from './state-disk.js'

/** The report routes of PROTOCOL §7, and the unlock that follows an accepted `provisioning` report. */
export type ReportApi = Pick<ProviderApi, 'reportProvisioning' | 'reportTerminated' | 'reportUsage' | 'unlock'>

/** `verdict`: the marketplace's answer to a `result` report, when it was read (not when the state confirmed it). */
export type Settlement = {delivered: true; verdict?: Verdict} | {delivered: false; reason: string; status: number}

/** §12: posts a lease's result (JobsApi.submitResult). */
export type SubmitResult = (leaseId: string, envelope: SignedResultEnvelope) => Promise<Verdict>

/**
 * Whether the marketplace's state shows a report's effect: asked when its answer could not be read, or when it was
 * refused (a refusal may follow an earlier attempt that took effect and whose answer was lost). `unknown`: the state
 * could not be read either.
 */
export type Confirmation = 'took_effect' | 'not_in_effect' | 'unknown'

export interface ReporterOptions {
  outbox: Outbox
  api: ReportApi
  journal: Journal
  log: AgentLog
  onApiError: (error: unknown) => void
  onDepth: (depth: number) => void
  /** Reports sent at once (to different contracts; one contract's reports keep their order). */
  parallel?: number
  /** Reads the marketplace's state for a report (see Confirmation); without it nothing is confirmed that way. */
  confirm?: (report: Report) => Promise<Confirmation>
  /** With it, a full disk keeps reports in memory (still sent) until they can be written. */
  disk?: StateDisk
  /** Sends `result` reports (the job loop's); without it they wait in the outbox. */
  submitResult?: SubmitResult
}

/**
 * Sends the outbox to the marketplace, oldest first, for as long as it takes: a report leaves the outbox only when the
 * marketplace accepted it (a 2xx that could be read, or its state shows the effect) or refused it for good (a 4xx
 * other than 401/403/429, which retrying cannot change, and its state does not show the effect). An answer that can't
 * be read is neither: the report stays until its effect is confirmed or an answer can be read.
 */
export class Reporter {
  private readonly queue: OutboxEntry[] = []
  private readonly waiters = new Map<string, (settlement: Settlement) => void>()
  private readonly backoff = new Backoff()
  private readonly closing = new AbortController()
  private drain: Promise<void> | undefined
  private failing = false
  /** Entries sent but not on disk (it was full); written once there is room. */
  private readonly unwritten = new Set<OutboxEntry>()
  /** Usage reports refused in a request with others: sent on their own. */
  private readonly sendAlone = new Set<OutboxEntry>()

  constructor(private readonly options: ReporterOptions) {
    options.disk?.onRecovery('outbox', () => this.writeWaiting())
  }

  /** Takes up the reports a previous run left; returns how many. */
  replay(): number {
    const {entries, quarantined} = this.options.outbox.load()
    for (const file of quarantined) this.options.log.warn({file}, 'outbox entry does not parse: moved aside, not sent')
    this.queue.push(...entries)
    this.options.onDepth(this.queue.length)
    if (entries.length > 0) {
      this.options.log.info({reports: entries.length}, 'replaying reports left from the previous run')
      this.kick()
    }
    return entries.length
  }

  /**
   * Writes the report durably, then sends it; resolves once it is accepted or refused for good. On a full disk it is
   * sent all the same and written once there is room.
   */
  send(report: Report): Promise<Settlement> {
    const {outbox, disk} = this.options
    const entry = outbox.entry(report)
    try {
      outbox.write(entry)
    } catch (error) {
      if (!disk?.noteFailure(outbox.path, error)) throw error
      this.unwritten.add(entry)
    }
    const contractId = 'contract_id' in report ? report.contract_id : undefined
    this.options.journal.note({event: 'report_queued', entry_id: entry.id, kind: report.kind, contract_id: contractId, status: statusOf(report)})
    const settled = new Promise<Settlement>((resolve) => this.waiters.set(entry.id, resolve))
    this.queue.push(entry)
    this.options.onDepth(this.queue.length)
    this.kick()
    return settled
  }

  get depth(): number {
    return this.queue.length
  }

  /** Reports held in memory only, because the disk was full. */
  get waitingForDisk(): number {
    return this.unwritten.size
  }

  /** Writes the entries that are still to send and not on disk; throws while one does not fit. */
  private writeWaiting(): void {
    for (const entry of this.unwritten) {
      this.options.outbox.write(entry)
      this.unwritten.delete(entry)
    }
  }

  /**
   * The settlement of a report already waiting (one a previous run left, found by `match`); undefined when none
   * waits. The job loop uses it to learn the verdict of a result it submitted before a restart.
   */
  settlementOf(match: (report: Report) => boolean): Promise<Settlement> | undefined {
    const entry = this.queue.find((candidate) => match(candidate.report))
    if (!entry) return undefined
    const earlier = this.waiters.get(entry.id)
    return new Promise<Settlement>((resolve) =>
      this.waiters.set(entry.id, (settlement) => {
        earlier?.(settlement)
        resolve(settlement)
      }),
    )
  }

  /** True while a report about this contract waits to be sent. */
  hasPending(contractId: string): boolean {
    return this.queue.some((entry) => 'contract_id' in entry.report && entry.report.contract_id === contractId)
  }

  /** Waits until the outbox is empty, or `signal` fires. */
  async flush(signal: AbortSignal): Promise<boolean> {
    while (this.queue.length > 0 && !signal.aborted) {
      this.kick()
      await Promise.race([this.drain, pause(60_000, signal)])
    }
    return this.queue.length === 0
  }

  /** Stops sending; what is left stays in the outbox for the next run. */
  close(): void {
    this.closing.abort()
  }

  private kick(): void {
    if (this.drain || this.closing.signal.aborted) return
    this.drain = this.drainAll().finally(() => {
      this.drain = undefined
      if (this.queue.length > 0 && !this.closing.signal.aborted) this.kick()
    })
  }

  private async drainAll(): Promise<void> {
    while (this.queue.length > 0 && !this.closing.signal.aborted) {
      const results = await Promise.all(this.nextDeliveries().map((group) => (group.length === 1 && group[0] ? this.deliver(group[0]) : this.deliverUsage(group))))
      if (results.every(Boolean)) {
        if (this.failing) this.options.log.info({outbox_depth: this.queue.length}, 'the marketplace accepts reports again')
        this.failing = false
        this.backoff.reset()
      } else {
        await pause(this.backoff.next(), this.closing.signal)
      }
    }
  }

  /**
   * The oldest entries, up to `parallel` requests, stopping before a second report about the same contract. Usage
   * reports waiting together (after an outage, or the last usage of contracts ending at once) go in one request, up to
   * the records §7 takes in one; one refused together is sent alone from then on.
   */
  private nextDeliveries(): OutboxEntry[][] {
    const limit = this.options.parallel ?? 8
    const deliveries: OutboxEntry[][] = []
    const contracts = new Set<string>()
    let usage: {entries: OutboxEntry[]; records: number} | undefined
    for (const entry of this.queue) {
      const {report} = entry
      const together = report.kind === 'usage' && !this.sendAlone.has(entry)
      if (together && usage && usage.records + report.records.length <= MAX_BATCH) {
        usage.entries.push(entry)
        usage.records += report.records.length
        continue
      }
      if (deliveries.length >= limit) break
      if (report.kind === 'usage') {
        const entries = [entry]
        if (together) usage = {entries, records: report.records.length}
        deliveries.push(entries)
        continue
      }
      const key = 'contract_id' in report ? report.contract_id : `entry:${entry.id}`
      if (contracts.has(key)) break
      contracts.add(key)
      deliveries.push([entry])
    }
    return deliveries
  }

  /** Usage reports in one request: all accepted, or all kept (split up when the marketplace refused them together). */
  private async deliverUsage(group: OutboxEntry[]): Promise<boolean> {
    const records = group.flatMap((entry) => (entry.report.kind === 'usage' ? entry.report.records : []))
    try {
      await this.options.api.reportUsage(records)
    } catch (error) {
      this.options.onApiError(error)
      if (refusedForGood(error)) {
        // One bad record refuses the whole request: alone, each report gets its own answer at once.
        for (const entry of group) this.sendAlone.add(entry)
        return true
      }
      return this.keptForRetry({entries: group.length, kind: 'usage'}, error)
    }
    for (const entry of group) await this.delivered(entry, 'answer')
    return true
  }

  /** True when the entry left the queue (accepted or refused for good). */
  private async deliver(entry: OutboxEntry): Promise<boolean> {
    let verdict: Verdict | undefined
    try {
      verdict = await this.post(entry.report)
    } catch (error) {
      this.options.onApiError(error)
      return this.afterFailure(entry, error)
    }
    await this.delivered(entry, 'answer', verdict)
    return true
  }

  private async afterFailure(entry: OutboxEntry, error: unknown): Promise<boolean> {
    const {report} = entry
    const contractId = 'contract_id' in report ? report.contract_id : undefined
    const refused = refusedForGood(error)
    const unknown = !(error instanceof ApiError) || error.unknown
    if (refused || unknown) {
      const confirmation = this.options.confirm ? await this.options.confirm(report) : refused ? 'not_in_effect' : 'unknown'
      if (confirmation === 'took_effect') {
        this.options.log.info({entry: entry.id, kind: report.kind, contract_id: contractId, err: describeError(error)}, 'the marketplace\'s state shows the report took effect (its answer was lost or refused a repeat)')
        await this.delivered(entry, 'state')
        return true
      }
      if (refused && confirmation === 'not_in_effect') {
        const reason = describeError(error)
        this.options.log.warn({entry: entry.id, kind: report.kind, contract_id: contractId, status: error.status, reason}, 'report refused by the marketplace: dropped from the outbox')
        this.options.journal.note({event: 'report_rejected', entry_id: entry.id, kind: report.kind, contract_id: contractId, reason})
        this.settle(entry, {delivered: false, reason, status: error.status})
        return true
      }
    }
    return this.keptForRetry({entry: entry.id, kind: report.kind, contract_id: contractId}, error)
  }

  /** Says once per failing spell that reports wait for the marketplace; false: the round backs off. */
  private keptForRetry(fields: Record<string, unknown>, error: unknown): false {
    if (!this.failing) this.options.log.warn({...fields, err: describeError(error)}, 'report not accepted yet: kept in the outbox, retrying with backoff')
    this.failing = true
    return false
  }

  private async delivered(entry: OutboxEntry, confirmedBy: 'answer' | 'state', verdict?: Verdict): Promise<void> {
    const {report} = entry
    const contractId = 'contract_id' in report ? report.contract_id : undefined
    this.options.journal.note({
      event: 'report_delivered',
      entry_id: entry.id,
      kind: report.kind,
      contract_id: contractId,
      status: statusOf(report),
      ...(confirmedBy === 'state' ? {confirmed_by: 'state' as const} : {}),
    })
    this.settle(entry, verdict ? {delivered: true, verdict} : {delivered: true})
    if (report.kind === 'provisioning' && report.unlock) {
      await this.options.api.unlock(report.contract_id, {retry: {retries: 1, baseDelayMs: 100, maxDelayMs: 500}}).catch((error: unknown) => {
        // The lock expires by itself; a provisioned contract is no longer pending anyway.
        this.options.log.debug({contract_id: report.contract_id, err: describeError(error)}, 'could not release the lock')
      })
    }
  }

  private async post(report: Report): Promise<Verdict | undefined> {
    const {api} = this.options
    switch (report.kind) {
      case 'provisioning': {
        const {status, instance, error, retry_possible} = report
        await api.reportProvisioning(report.contract_id, {status, instance, error, retry_possible})
        return
      }
      case 'terminated':
        await api.reportTerminated(report.contract_id)
        return
      case 'usage':
        await api.reportUsage(report.records)
        return
      case 'result':
        if (!this.options.submitResult) throw new Error('this agent serves no job market: the result waits in the outbox for one that does')
        return this.options.submitResult(report.lease_id, report.envelope)
    }
  }

  private settle(entry: OutboxEntry, settlement: Settlement): void {
    if (!this.unwritten.delete(entry)) this.options.outbox.remove(entry)
    this.sendAlone.delete(entry)
    const index = this.queue.indexOf(entry)
    if (index !== -1) this.queue.splice(index, 1)
    this.options.onDepth(this.queue.length)
    this.waiters.get(entry.id)?.(settlement)
    this.waiters.delete(entry.id)
  }
}

/** A readable refusal that sending again cannot change: not 401/403, which a key or delegation put right may lift. */
function refusedForGood(error: unknown): error is ApiError {
  return error instanceof ApiError && error.refused && error.status !== 401 && error.status !== 403
}

function statusOf(report: Report): string | undefined {
  return report.kind === 'provisioning' ? report.status : undefined
}
