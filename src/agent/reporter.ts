import {ApiError} from '../core/api/client.js'
import type {ProviderApi} from '../core/api/provider.js'
import {describeError} from '../core/errors.js'
import {Backoff, pause} from './backoff.js'
import type {Journal} from './journal.js'
import type {AgentLog} from './logger.js'
import type {Outbox, OutboxEntry, Report} from './outbox.js'

/** The report routes of PROTOCOL §7, and the unlock that follows an accepted `provisioning` report. */
export type ReportApi = Pick<ProviderApi, 'reportProvisioning' | 'reportTerminated' | 'reportUsage' | 'unlock'>

export type Settlement = {delivered: true} | {delivered: false; reason: string; status: number}

export interface ReporterOptions {
  outbox: Outbox
  api: ReportApi
  journal: Journal
  log: AgentLog
  onApiError: (error: unknown) => void
  onDepth: (depth: number) => void
  /** Reports sent at once (to different contracts; one contract's reports keep their order). */
  parallel?: number
}

/**
 * Sends the outbox to the marketplace, oldest first, for as long as it takes: a report leaves the outbox only when the
 * marketplace accepted it (2xx) or refused it for good (a 4xx other than 401/403/429, which retrying cannot change).
 */
export class Reporter {
  private readonly queue: OutboxEntry[] = []
  private readonly waiters = new Map<string, (settlement: Settlement) => void>()
  private readonly backoff = new Backoff()
  private readonly closing = new AbortController()
  private drain: Promise<void> | undefined
  private failing = false

  constructor(private readonly options: ReporterOptions) {}

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

  /** Writes the report durably, then sends it; resolves once it is accepted or refused for good. */
  send(report: Report): Promise<Settlement> {
    const entry = this.options.outbox.add(report)
    const contractId = 'contract_id' in report ? report.contract_id : undefined
    this.options.journal.append({event: 'report_queued', entry_id: entry.id, kind: report.kind, contract_id: contractId, status: statusOf(report)})
    const settled = new Promise<Settlement>((resolve) => this.waiters.set(entry.id, resolve))
    this.queue.push(entry)
    this.options.onDepth(this.queue.length)
    this.kick()
    return settled
  }

  get depth(): number {
    return this.queue.length
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
      const batch = this.nextBatch()
      const results = await Promise.all(batch.map((entry) => this.deliver(entry)))
      if (results.every(Boolean)) {
        if (this.failing) this.options.log.info({outbox_depth: this.queue.length}, 'the marketplace accepts reports again')
        this.failing = false
        this.backoff.reset()
      } else {
        await pause(this.backoff.next(), this.closing.signal)
      }
    }
  }

  /** The oldest entries, up to `parallel`, stopping before a second report about the same contract. */
  private nextBatch(): OutboxEntry[] {
    const limit = this.options.parallel ?? 8
    const batch: OutboxEntry[] = []
    const contracts = new Set<string>()
    for (const entry of this.queue) {
      if (batch.length >= limit) break
      const key = 'contract_id' in entry.report ? entry.report.contract_id : `usage:${entry.id}`
      if (contracts.has(key)) break
      contracts.add(key)
      batch.push(entry)
    }
    return batch
  }

  /** True when the entry left the queue (accepted or refused for good). */
  private async deliver(entry: OutboxEntry): Promise<boolean> {
    const {report} = entry
    const contractId = 'contract_id' in report ? report.contract_id : undefined
    try {
      await this.post(report)
    } catch (error) {
      this.options.onApiError(error)
      const final = error instanceof ApiError && !error.retryable && error.status !== 401 && error.status !== 403
      if (!final) {
        if (!this.failing) this.options.log.warn({entry: entry.id, kind: report.kind, contract_id: contractId, err: describeError(error)}, 'report not accepted yet: kept in the outbox, retrying with backoff')
        this.failing = true
        return false
      }
      const reason = describeError(error)
      this.options.log.warn({entry: entry.id, kind: report.kind, contract_id: contractId, status: error.status, reason}, 'report refused by the marketplace: dropped from the outbox')
      this.options.journal.append({event: 'report_rejected', entry_id: entry.id, kind: report.kind, contract_id: contractId, reason})
      this.settle(entry, {delivered: false, reason, status: error.status})
      return true
    }
    this.options.journal.append({event: 'report_delivered', entry_id: entry.id, kind: report.kind, contract_id: contractId, status: statusOf(report)})
    this.settle(entry, {delivered: true})
    if (report.kind === 'provisioning' && report.unlock) {
      await this.options.api.unlock(report.contract_id, {retry: {retries: 1, baseDelayMs: 100, maxDelayMs: 500}}).catch((error: unknown) => {
        // The lock expires by itself; a provisioned contract is no longer pending anyway.
        this.options.log.debug({contract_id: report.contract_id, err: describeError(error)}, 'could not release the lock')
      })
    }
    return true
  }

  private async post(report: Report): Promise<void> {
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
    }
  }

  private settle(entry: OutboxEntry, settlement: Settlement): void {
    this.options.outbox.remove(entry)
    const index = this.queue.indexOf(entry)
    if (index !== -1) this.queue.splice(index, 1)
    this.options.onDepth(this.queue.length)
    this.waiters.get(entry.id)?.(settlement)
    this.waiters.delete(entry.id)
  }
}

function statusOf(report: Report): string | undefined {
  return report.kind === 'provisioning' ? report.status : undefined
}
