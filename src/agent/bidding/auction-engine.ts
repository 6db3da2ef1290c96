import {setTimeout as sleep} from 'node:timers/promises'

import {bidCommitment, newBidSalt} from '../../core/auction.js'
import type {RetryPolicy} from '../../core/api/client.js'
import {ApiError} from '../../core/api/api-error.js'
import type {Auction, Commitment, Job, Lease, LeaseStatus, Reveal} from '../../core/api/job-schemas.js'
import type {JobKind} from '../../core/api/job-kinds.js'
import type {CallOptions} from '../../core/api/provider.js'
import type {JobBiddingConfig} from '../../core/config/job-bidding.js'
import {describeError} from '../../core/errors.js'
import {sha256Hex} from '../../core/signing.js'
import type {RunEstimate} from '../../executors/executor.js'
import type {AgentLog} from '../logger.js'
import {decideAuctionJob, promisedRunOf, screenCapacity, type AuctionVerdict} from './auction-decide.js'
import type {AuctionJournal, AuctionRecord} from './auction-journal.js'
import type {AuctionMetrics} from './auction-metrics.js'
import type {PromisedRun} from './auction-pricing.js'
import type {PricingScript} from './script-pricing.js'

/** The §§12–13 calls the engine makes (JobsApi has them). */
export interface AuctionApi {
  readonly providerPubkey: string
  openJobs(waitSeconds: number, options?: CallOptions): Promise<Job[]>
  program(digest: string, options?: CallOptions): Promise<Buffer>
  input(jobId: string, options?: CallOptions): Promise<Buffer>
  commit(jobId: string, commitment: string, options?: CallOptions): Promise<Commitment>
  reveal(jobId: string, fee: string, salt: string, options?: CallOptions): Promise<Reveal>
  auction(jobId: string, options?: CallOptions): Promise<Auction>
  lease(jobId: string, options?: CallOptions): Promise<Lease>
  leases(status?: LeaseStatus, options?: CallOptions): Promise<Lease[]>
}

/** A job this agent won and leased, handed to whatever runs jobs (the job loop). */
export interface WonJob {
  job: Job
  lease: Lease
  /** What the marketplace pays for it: the second-lowest revealed fee (§13). */
  clearingFee: string
}

/**
 * Runs a won job to its end (fetch, run, sign, submit, or fail the lease); the job stops counting against
 * max_concurrent when the promise settles, whichever way.
 */
export type WonJobRunner = (won: WonJob, signal: AbortSignal) => Promise<void>

export interface AuctionEngineOptions {
  api: AuctionApi
  config: JobBiddingConfig
  script: PricingScript | undefined
  /** The kinds this agent has an executor for. */
  kinds: readonly JobKind[]
  /** This machine's expected run time of a job, from its measured speed (Executor.estimate). */
  estimate(job: Job, program: Buffer, input: Buffer | undefined): Promise<RunEstimate | undefined>
  /** Measures this machine for a kind (Executor.calibrate): once per kind when the engine starts. */
  calibrate?(kind: JobKind, signal: AbortSignal): Promise<void>
  /** Jobs run at once ([jobs] max_concurrent). */
  runSlots: number
  journal: AuctionJournal
  log: AgentLog
  metrics: AuctionMetrics
  onWon: WonJobRunner
  longPollWaitSeconds: number
  retry: RetryPolicy
  now?: () => number
}

/** Reveals go out this long after bidding closes, and outcomes are asked for this long after reveals close: room for clock skew. */
const SKEW_MS = 200
/** How often something waiting (room to commit, a lease to retry) is looked at again. */
const RECHECK_MS = 1000
/** Decisions and auction steps in flight at once: reveals of many jobs must all fit in the reveal window. */
const PARALLEL = 16
const PROGRAM_CACHE = 16
/** Errors of a lease request that a later try may get past (the tier frees up, stake is added). */
const LEASE_RETRYABLE = new Set(['tier_limit', 'insufficient_stake', 'auction_open'])

/**
 * The §13 bidder of `outpost run` ([jobs.bidding]): each round it reads the open jobs (a long poll, cut short to
 * when something is due), decides every new auction job once (filters, then price), commits to those it bids on with
 * a fresh salt journalled and fsynced before the commitment is sent, reveals in the window, asks for the outcome when
 * reveals close, leases what it won and hands the lease to the job runner. A commitment counts against
 * max_concurrent and the schedule from the moment it is journalled until the job is lost or done, so the engine
 * never wins more than it can run before the deadlines.
 */
export class AuctionEngine {
  /** Jobs decided without a commitment while their bidding is open (each is logged once). */
  private readonly declined = new Map<string, number>()
  /** Declined for room (max_concurrent, the schedule): decided again when room frees while bidding is open. */
  private readonly waitingForRoom = new Map<string, Job>()
  /** The latest view of each auction job seen open. */
  private readonly seen = new Map<string, Job>()
  private readonly running = new Map<string, Promise<void>>()
  private readonly programs = new Map<string, Buffer>()
  private readonly now: () => number
  private readonly runs = new AbortController()
  private readonly calibrations = new Map<JobKind, Promise<void>>()

  constructor(private readonly options: AuctionEngineOptions) {
    this.now = options.now ?? Date.now
  }

  /** Rounds until the signal fires; then stops the runs it started and waits for them. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0
    while (!signal.aborted) {
      let delay: number
      try {
        delay = await this.round(signal)
        failures = 0
      } catch (error) {
        if (signal.aborted) break
        failures++
        delay = Math.min(30_000, 500 * 2 ** Math.min(failures, 6))
        this.options.log.warn({err: describeError(error), retry_in_ms: delay}, 'auction: a round failed; retrying with backoff')
      }
      if (delay > 0) await sleep(delay, undefined, {signal}).catch(() => undefined)
    }
    await this.stop()
  }

  /** Stops the won jobs' runs (the runner fails or keeps their leases as it decides) and waits for them. */
  async stop(): Promise<void> {
    this.runs.abort()
    await Promise.allSettled(this.running.values())
  }

  /** Jobs committed to or won and not done. */
  promisedCount(): number {
    return this.options.journal.open().length
  }

  /** One round; returns how long to wait before the next (ms). */
  async round(signal: AbortSignal): Promise<number> {
    this.measure(signal)
    const jobs = await this.options.api.openJobs(this.waitSeconds(), {signal, retry: this.options.retry})
    const auctions = jobs.filter((job) => job.reward.mode === 'auction')
    for (const job of auctions) this.seen.set(job.job_id, job)
    const fresh = auctions.filter((job) => !this.options.journal.get(job.job_id) && !this.declined.has(job.job_id))
    await inParallel(fresh, (job) => this.consider(job, signal))
    const roomy = [...this.waitingForRoom.values()].filter((job) => (job.bid_closes_at ?? 0) > this.now() && this.promisedCount() < this.options.config.max_concurrent)
    await inParallel(roomy, (job) => this.consider(job, signal))
    await inParallel(this.options.journal.open(), (record) => this.advance(record, signal))
    this.forgetClosed()
    this.options.metrics.promised.set(this.promisedCount())
    return this.untilDue()
  }

  private promisedRuns(): PromisedRun[] {
    const now = this.now()
    return this.options.journal.open().map((record) => ({
      jobId: record.jobId,
      startAt: Math.max(now, record.revealClosesAt),
      seconds: record.estimateSeconds,
      deadline: record.deadline,
    }))
  }

  private async consider(job: Job, signal: AbortSignal): Promise<void> {
    const verdict = await decideAuctionJob(job, {
      config: this.options.config,
      kinds: this.options.kinds,
      script: this.options.script,
      runSlots: this.options.runSlots,
      program: (of) => this.program(of, signal),
      input: (of) => this.input(of, signal),
      estimate: (of, program, input) => this.estimate(of, program, input, signal),
      promised: () => this.promisedRuns(),
      now: this.now,
      signal,
    })
    if (signal.aborted) return
    if (verdict.kind === 'commit' && verdict.estimate) {
      // Checked again with nothing awaited before the journal entry: decisions made side by side can't both take the last place.
      const now = this.now()
      if (now >= (job.bid_closes_at ?? 0)) return this.noteDecline(job, {kind: 'declined', reason: 'bidding_closed', detail: 'bidding closed while the job was being decided'})
      const room = screenCapacity(promisedRunOf(job, verdict.estimate, now), this.promisedRuns(), this.options.config, this.options.runSlots, now)
      if (room) return this.noteDecline(job, {...room, estimate: verdict.estimate})
      await this.commit(job, verdict, verdict.estimate, signal)
      return
    }
    this.noteDecline(job, verdict)
  }

  /** The executor's estimate, once the kind's measurement (started with the engine) is over. */
  private async estimate(job: Job, program: Buffer, input: Buffer | undefined, signal: AbortSignal): Promise<RunEstimate | undefined> {
    this.measure(signal)
    await this.calibrations.get(job.kind)
    return this.options.estimate(job, program, input)
  }

  /**
   * Measures this machine once per served kind when the engine starts (in the background: the first round doesn't
   * wait), so deadlines are checked against this machine's speed as it is now, even on a fresh agent.
   */
  private measure(signal: AbortSignal): void {
    const {calibrate, log} = this.options
    if (!calibrate) return
    for (const kind of this.options.kinds) {
      if (this.calibrations.has(kind)) continue
      const started = Date.now()
      this.calibrations.set(
        kind,
        calibrate(kind, signal).then(
          () => log.info({kind, took_ms: Date.now() - started}, `auction: measured this machine for ${kind} jobs`),
          (error: unknown) => log.warn({kind, err: describeError(error)}, `auction: measuring this machine for ${kind} jobs failed; estimates come from past runs alone`),
        ),
      )
    }
  }

  private noteDecline(job: Job, verdict: AuctionVerdict): void {
    if (verdict.kind !== 'declined') return
    const waiting = verdict.reason === 'at_capacity' || verdict.reason === 'schedule_full'
    const again = this.waitingForRoom.has(job.job_id)
    if (waiting) this.waitingForRoom.set(job.job_id, job)
    else this.waitingForRoom.delete(job.job_id)
    if (!waiting) this.declined.set(job.job_id, job.bid_closes_at ?? this.now())
    // One decision line per job: a job that keeps waiting for room is not logged again each time it is looked at.
    if (again && waiting) return
    this.options.metrics.decisions.inc({decision: 'declined', reason: verdict.reason})
    this.options.log.info(
      {job_id: job.job_id, kind: job.kind, decision: 'declined', reason: verdict.reason, detail: verdict.detail, ...(verdict.estimate ? {estimate_seconds: verdict.estimate.seconds} : {})},
      `auction: declined job ${job.job_id} (${verdict.reason})${waiting ? '; it is decided again if room frees before bidding closes' : ''}`,
    )
  }

  private async commit(job: Job, verdict: Extract<AuctionVerdict, {kind: 'commit'}>, estimate: RunEstimate, signal: AbortSignal): Promise<void> {
    const {api, journal, log, metrics} = this.options
    const salt = newBidSalt()
    const commitment = bidCommitment(job.job_id, api.providerPubkey, verdict.fee, salt)
    // Durable before it is sent: after a crash from here on, the restarted engine still reveals it.
    const record = journal.append({
      event: 'commit_prepared',
      job_id: job.job_id,
      kind: job.kind,
      fee: verdict.fee,
      salt,
      commitment,
      bid_closes_at: job.bid_closes_at ?? this.now(),
      reveal_closes_at: job.reveal_closes_at ?? this.now(),
      deadline: job.deadline,
      estimate_seconds: estimate.seconds,
    })
    this.waitingForRoom.delete(job.job_id)
    metrics.decisions.inc({decision: 'committed', reason: this.options.config.strategy})
    metrics.committedFee.observe(Number(verdict.fee))
    log.info(
      {job_id: job.job_id, kind: job.kind, decision: 'committed', fee: verdict.fee, why: verdict.why, estimate_seconds: estimate.seconds, estimate_basis: estimate.basis},
      `auction: committed to job ${job.job_id} at fee ${verdict.fee}`,
    )
    if (record) await this.sendCommitment(record, signal)
  }

  private async sendCommitment(record: AuctionRecord, signal: AbortSignal): Promise<void> {
    try {
      await this.options.api.commit(record.jobId, record.commitment, {signal, retry: this.options.retry})
      this.options.journal.append({event: 'committed', job_id: record.jobId})
    } catch (error) {
      if (signal.aborted) return
      // Refused for good: nothing was committed, so nothing is promised.
      if (error instanceof ApiError && error.refused) {
        this.close(record, 'abandoned', `the commitment was refused: ${error.apiCode}: ${error.message}`)
        return
      }
      this.options.log.warn({job_id: record.jobId, err: describeError(error)}, 'auction: the commitment could not be sent; trying again while bidding is open')
    }
  }

  /** Moves one journalled auction on, as far as the time allows. */
  private async advance(record: AuctionRecord, signal: AbortSignal): Promise<void> {
    const now = this.now()
    if (record.stage === 'prepared' || record.stage === 'committed') {
      if (now < record.bidClosesAt) {
        if (!record.acknowledged) await this.sendCommitment(record, signal)
        return
      }
      if (now < record.bidClosesAt + SKEW_MS) return
      if (now < record.revealClosesAt) {
        await this.reveal(record, signal)
        return
      }
      this.close(record, 'missed', 'the reveal window closed before the fee was revealed')
      return
    }
    if (record.stage === 'revealed') {
      if (now >= record.revealClosesAt + SKEW_MS) await this.settle(record, signal)
      return
    }
    if (record.stage === 'won') {
      await this.takeLease(record, signal)
      return
    }
    if (record.stage === 'leased' && !this.running.has(record.jobId)) await this.resumeLease(record, signal)
  }

  private async reveal(record: AuctionRecord, signal: AbortSignal): Promise<void> {
    const {api, journal, log, metrics} = this.options
    try {
      await api.reveal(record.jobId, record.fee, record.salt, {signal, retry: this.options.retry})
    } catch (error) {
      if (signal.aborted) return
      if (error instanceof ApiError && error.apiCode === 'bidding_open') return
      if (error instanceof ApiError && error.refused) {
        const outcome = error.apiCode === 'reveal_closed' ? 'missed' : 'abandoned'
        if (error.apiCode === 'commitment_mismatch') log.error({job_id: record.jobId, err: describeError(error)}, 'auction: the marketplace refused our reveal as not matching our commitment')
        this.close(record, outcome, `the reveal was refused: ${error.apiCode}: ${error.message}`)
        return
      }
      log.warn({job_id: record.jobId, err: describeError(error)}, 'auction: the reveal could not be sent; trying again while the window is open')
      return
    }
    journal.append({event: 'revealed', job_id: record.jobId})
    metrics.outcomes.inc({outcome: 'revealed'})
    log.info({job_id: record.jobId, fee: record.fee}, `auction: revealed fee ${record.fee} for job ${record.jobId}`)
  }

  private async settle(record: AuctionRecord, signal: AbortSignal): Promise<void> {
    const {api, journal, log, metrics} = this.options
    const auction = await api.auction(record.jobId, {signal, retry: this.options.retry})
    if (auction.phase !== 'closed') return
    if (auction.winner === api.providerPubkey) {
      const clearingFee = auction.clearing_fee ?? record.fee
      journal.append({event: 'won', job_id: record.jobId, clearing_fee: clearingFee})
      metrics.outcomes.inc({outcome: 'won'})
      metrics.clearingFee.observe(Number(clearingFee))
      log.info({job_id: record.jobId, fee: record.fee, clearing_fee: clearingFee}, `auction: won job ${record.jobId} at clearing fee ${clearingFee} (bid ${record.fee})`)
      await this.takeLease(record, signal)
      return
    }
    this.close(record, 'lost', auction.clearing_fee === undefined ? 'no winner' : `won by another provider at clearing fee ${auction.clearing_fee}`)
  }

  private async takeLease(record: AuctionRecord, signal: AbortSignal): Promise<void> {
    const {api, journal, log, metrics} = this.options
    let lease: Lease
    try {
      lease = await api.lease(record.jobId, {signal, retry: this.options.retry})
    } catch (error) {
      if (signal.aborted) return
      if (error instanceof ApiError && error.apiCode === 'leased') {
        // A lease taken before a crash whose answer was lost: it is ours if the active leases say so.
        const ours = (await api.leases('active', {signal, retry: this.options.retry})).find((item) => item.job_id === record.jobId)
        if (ours) {
          journal.append({event: 'leased', job_id: record.jobId, lease_id: ours.lease_id})
          this.start(record, ours)
          return
        }
      }
      const retryable = !(error instanceof ApiError) || error.retryable || LEASE_RETRYABLE.has(error.apiCode)
      if (retryable && this.now() < record.deadline) {
        log.warn({job_id: record.jobId, err: describeError(error)}, 'auction: could not lease the won job yet; trying again')
        return
      }
      log.warn({job_id: record.jobId, err: describeError(error)}, 'auction: the won job could not be leased')
      this.close(record, 'lease_refused', describeError(error))
      return
    }
    journal.append({event: 'leased', job_id: record.jobId, lease_id: lease.lease_id})
    metrics.outcomes.inc({outcome: 'leased'})
    log.info({job_id: record.jobId, lease_id: lease.lease_id, expires_at: lease.expires_at}, `auction: leased won job ${record.jobId}; handing it to the job runner`)
    this.start(record, lease)
  }

  /** After a restart: a lease taken before it, still active, is run again; one that ended is done. */
  private async resumeLease(record: AuctionRecord, signal: AbortSignal): Promise<void> {
    const active = await this.options.api.leases('active', {signal, retry: this.options.retry})
    const lease = active.find((item) => item.lease_id === record.leaseId)
    if (lease) this.start(record, lease)
    else this.close(record, 'done', 'the lease is no longer active')
  }

  private start(record: AuctionRecord, lease: Lease): void {
    const job = lease.job ?? this.seen.get(record.jobId)
    if (!job) {
      this.close(record, 'done', 'neither the lease nor the open list carries the job, so it cannot be run')
      return
    }
    const run = this.options
      .onWon({job, lease, clearingFee: record.clearingFee ?? record.fee}, this.runs.signal)
      .then(
        () => this.close(record, 'done'),
        (error: unknown) => this.close(record, 'done', `the run failed: ${describeError(error)}`),
      )
      .finally(() => this.running.delete(record.jobId))
    this.running.set(record.jobId, run)
  }

  private close(record: AuctionRecord, outcome: string, reason?: string): void {
    if (this.options.journal.get(record.jobId)?.stage === 'closed') return
    this.options.journal.append({event: 'closed', job_id: record.jobId, outcome, ...(reason === undefined ? {} : {reason})})
    this.options.metrics.outcomes.inc({outcome})
    this.options.metrics.promised.set(this.promisedCount())
    const details = {job_id: record.jobId, outcome, fee: record.fee, ...(reason === undefined ? {} : {reason})}
    if (outcome === 'lost') this.options.log.info(details, `auction: lost job ${record.jobId} (bid ${record.fee}; ${reason ?? ''})`)
    else this.options.log.info(details, `auction: job ${record.jobId} ${outcome}${reason ? `: ${reason}` : ''}`)
  }

  private async program(job: Job, signal: AbortSignal): Promise<Buffer> {
    const cached = this.programs.get(job.program.digest)
    if (cached) return cached
    const bytes = await this.options.api.program(job.program.digest, {signal, retry: this.options.retry})
    if (sha256Hex(bytes) !== job.program.digest) throw new Error(`the program's bytes do not match its digest ${job.program.digest}`)
    if (this.programs.size >= PROGRAM_CACHE) this.programs.delete(this.programs.keys().next().value ?? '')
    this.programs.set(job.program.digest, bytes)
    return bytes
  }

  private async input(job: Job, signal: AbortSignal): Promise<Buffer> {
    const bytes = await this.options.api.input(job.job_id, {signal, retry: this.options.retry})
    if (sha256Hex(bytes) !== job.input.digest) throw new Error(`the input's bytes do not match its digest ${job.input.digest}`)
    return bytes
  }

  /** Jobs whose bidding closed are forgotten (the journalled ones live on in the journal). */
  private forgetClosed(): void {
    const now = this.now()
    for (const [id, closesAt] of this.declined) if (closesAt <= now) this.declined.delete(id)
    for (const [id, job] of this.waitingForRoom) if ((job.bid_closes_at ?? 0) <= now) this.waitingForRoom.delete(id)
    for (const [id, job] of this.seen) if (job.deadline <= now || (this.options.journal.get(id) === undefined && (job.bid_closes_at ?? 0) <= now)) this.seen.delete(id)
  }

  /** When something is next due without a new job: a reveal, an outcome, a commitment or lease to retry, room. */
  private nextDue(): number | undefined {
    const now = this.now()
    const dues: number[] = []
    for (const record of this.options.journal.open()) {
      if (record.stage === 'prepared' || record.stage === 'committed') {
        dues.push(now < record.bidClosesAt ? (record.acknowledged ? record.bidClosesAt + SKEW_MS : now + RECHECK_MS) : now)
      } else if (record.stage === 'revealed') {
        dues.push(record.revealClosesAt + SKEW_MS)
      } else if (record.stage === 'won' || (record.stage === 'leased' && !this.running.has(record.jobId))) {
        dues.push(now + RECHECK_MS)
      } else {
        // A running job: when it ends, room frees for jobs waiting.
        if (this.waitingForRoom.size > 0) dues.push(now + RECHECK_MS)
      }
    }
    if (this.waitingForRoom.size > 0 && this.promisedCount() < this.options.config.max_concurrent) dues.push(now + RECHECK_MS)
    return dues.length === 0 ? undefined : Math.min(...dues)
  }

  /** The long poll's wait in whole seconds: the configured one, cut short to when something is due. */
  private waitSeconds(): number {
    const most = this.options.longPollWaitSeconds
    const next = this.nextDue()
    if (next === undefined) return most
    return Math.max(0, Math.min(most, Math.floor((next - this.now()) / 1000)))
  }

  private untilDue(): number {
    const next = this.nextDue()
    if (next === undefined) return this.options.longPollWaitSeconds === 0 ? RECHECK_MS : 0
    return Math.max(0, Math.min(RECHECK_MS, next - this.now()))
  }
}

/** Runs `work` over the items, at most PARALLEL at once. */
async function inParallel<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]
      if (item !== undefined) await work(item)
    }
  }
  await Promise.all(Array.from({length: Math.min(PARALLEL, items.length)}, worker))
}
