import {existsSync, readFileSync} from 'node:fs'
import {cpus, totalmem} from 'node:os'
import {join} from 'node:path'

import {ApiError} from '../core/api/api-error.js'
import type {JobKind} from '../core/api/job-kinds.js'
import type {JobsApi} from '../core/api/jobs.js'
import type {HealthCheck, HeartbeatBody, ProviderApi} from '../core/api/provider.js'
import type {Contract, Instance} from '../core/api/schemas.js'
import type {JobBiddingConfig} from '../core/config/job-bidding.js'
import type {BiddingConfig, Offering} from '../core/config/schema.js'
import {verifyContractRequest, type ContractRequestRefusal} from '../core/contract-request.js'
import {formatAmount, parseAmount} from '../core/decimal.js'
import {describeError} from '../core/errors.js'
import {failureText, publicHealthDetails, type FailureCategory} from '../core/failure.js'
import {writeFileAtomic} from '../core/files.js'
import {fromHex} from '../core/hex.js'
import {sealCredentials} from '../core/sealing.js'
import {randomHex, type KeyPair, type SignedUsageRecord} from '../core/signing.js'
import type {Executor} from '../executors/executor.js'
import {contractHolder, GpuShortageError, type GpuAllocator, type GpuUnit} from '../gpu/allocator.js'
import {instanceName, InstanceMismatchError, ProvisionAbortedError, ProvisionError, type InstanceClaim, type ProvisionedInstance, type Provisioner} from '../provisioners/provisioner.js'
import {nextTier} from '../stake/tiers.js'
import {Backoff, follow, pause, unlessAborted} from './backoff.js'
import {AuctionEngine, type AuctionApi} from './bidding/auction-engine.js'
import {AuctionJournal, auctionJournalPath} from './bidding/auction-journal.js'
import {createAuctionMetrics} from './bidding/auction-metrics.js'
import {BidEngine, type BiddingApi, type HeldContracts} from './bidding/engine.js'
import type {PricingScript} from './bidding/script-pricing.js'
import {ContractLocks, type LockApi} from './contract-lock.js'
import {allocateForContract, freeCapacity, openGpuAllocator} from './gpus.js'
import {JobLoop, type JobLoopApi, type JobLoopSettings} from './job-loop.js'
import type {ResultAttester} from './result-envelope.js'
import {Journal, journalPath, journalState, noteReady, readJournal, type JournalState} from './journal.js'
import {OfferingBook} from './offerings.js'
import type {AgentLog} from './logger.js'
import type {AgentMetrics, ContractResult} from './metrics.js'
import {judgeReadiness, type Readiness} from './readiness.js'
import {Outbox, type Report} from './outbox.js'
import {Reporter, type Confirmation, type ReportApi} from './reporter.js'
import {Siblings} from './siblings.js'
import {outOfSpaceCause, StateDisk} from './state-disk.js'
import {completedPeriods, periodsUntilEnd, usageRecord, type UsagePeriod} from './usage.js'
import {HealthArchive} from './health-archive.js'
import {UsageArchive} from './usage-archive.js'
import {WorkQueue} from './work-queue.js'

export interface AgentSettings {
  /** The heartbeat interval when the marketplace's answer names none that PROTOCOL §5 allows. */
  heartbeatSeconds: number
  longPollWaitSeconds: number
  pollIntervalSeconds: number
  healthCheckIntervalSeconds: number
  usageIntervalSeconds: number
  reconcileIntervalSeconds: number
  activeSyncSeconds: number
  maxConcurrentProvisions: number
  lockTtlSeconds: number
  /** A sibling agent whose last heartbeat is older than this is dead, and its contracts are taken over; 0: 3 × the heartbeat interval. */
  siblingDeadAfterSeconds: number
}

/** The marketplace routes the agent calls (ProviderApi has them all). */
export type AgentApi = Pick<ProviderApi, 'heartbeat' | 'pendingProvision' | 'pendingWork' | 'activeContracts' | 'reportHealth' | 'reconcile' | 'stake' | 'offerings'> &
  LockApi &
  ReportApi &
  BiddingApi

export interface AgentOptions {
  api: AgentApi
  key: KeyPair
  provisioner: Provisioner
  stateDir: string
  log: AgentLog
  metrics: AgentMetrics
  settings: AgentSettings
  version: string
  /** Destroy instances the marketplace knows nothing of (only `outpost-*` ones). */
  pruneOrphans: boolean
  /** [bidding] when enabled: the daemon bids on open orders (§11); won ones arrive as accepted contracts. */
  bidding?: {config: BiddingConfig; script: PricingScript | undefined}
  /** The config's [[offerings]]: a contract for one of them gets at most its resources (PROTOCOL §6). */
  offerings: readonly Offering[]
  /** [jobs] when enabled: the daemon serves job markets (§12) beside the contracts. */
  jobs?: {
    api: JobLoopApi & Pick<JobsApi, 'submitResult'> & AuctionApi
    executors: ReadonlyMap<JobKind, Executor>
    settings: Omit<JobLoopSettings, 'longPollWaitSeconds' | 'pollIntervalSeconds'>
    /** [attestation] when enabled: a TPM quote on every result, and jobs that require attestation taken (§14). */
    attest?: ResultAttester
    /** [jobs.bidding]: the daemon bids in §13 auctions; won jobs are run by the job loop. */
    auctions?: {config: JobBiddingConfig; script: PricingScript | undefined}
  }
}

/** Where a contract stands on the marketplace, as the agent can read it: on its active list, pending, or neither. */
type ContractStanding = {kind: 'active'; contract: Contract} | {kind: 'pending'} | {kind: 'gone'}

/** How long a contract is left alone after it was declined, so a poll that returns it again does not spin. */
const DECLINE_MS = {locked: 5000, retry: 3000, refused: 30_000} as const
/** A long poll that failed is tried again after this long of plain polling. */
const LONG_POLL_RETRY_MS = 5 * 60_000
/** Between polls that returned only contracts already in hand. */
const IDLE_POLL_MS = 250
const HEALTH_PARALLEL = 16
const CAPABILITIES = ['long-poll', 'sealed-credentials', 'usage-v1', 'reconcile']
/** Fewer retries per request than a one-shot command: the daemon's own loops back off and try again. */
const QUICK_RETRY = {retries: 1, baseDelayMs: 100, maxDelayMs: 500}
/** PROTOCOL §5: the interval a heartbeat's answer may name. */
const HEARTBEAT_SECONDS = {min: 10, max: 3600}
/** Between checks of the job loop while the agent drains. */
const DRAIN_IDLE_MS = 1000
/** While the state disk is full, what waits is written again this often. */
const DISK_RETRY_MS = 2000
/** How long the heartbeat that announces a drain may take (at most). */
export const DRAIN_HEARTBEAT_MS = 5000
/** §3–4: the marketplace refuses the agent key itself (not one request): the agent can't work until that changes. */
const KEY_REFUSALS = new Set(['delegation_expired', 'delegation_revoked', 'unknown_key', 'wrong_provider'])

/**
 * The provider agent: turns accepted contracts into instances exactly once, reports what it did through a durable
 * outbox, keeps the marketplace informed (heartbeat, health, usage) and ends what has ended.
 */
export class Agent {
  /** This state dir's identity, written into every instance it reports, so two agents of one provider tell theirs apart. */
  readonly agentId: string
  /** What this run did, by result (the metric's counts, readable without prom-client's async API). */
  readonly outcomes: Record<ContractResult, number> = {provisioned: 0, failed: 0, skipped: 0, interrupted: 0, terminated: 0}

  private readonly api: AgentApi
  private readonly provisioner: Provisioner
  private readonly log: AgentLog
  private readonly metrics: AgentMetrics
  private readonly settings: AgentSettings
  private readonly journal: Journal
  /** Resolved by noteInHandMoved(), then replaced. */
  private inHandMoved = movement()
  private readonly outbox: Outbox
  private readonly reporter: Reporter
  private readonly state: JournalState
  private readonly queue: WorkQueue<Contract>
  private readonly locks: ContractLocks
  private readonly bidEngine: BidEngine | undefined
  private readonly offerings: OfferingBook
  /** The job-market loop, when [jobs] is enabled. */
  readonly jobLoop: JobLoop | undefined
  /** The §13 bidder, when [jobs.bidding] is set too; the job loop runs what it wins. */
  readonly auctionEngine: AuctionEngine | undefined
  /** Resolves once the marketplace acknowledged a heartbeat: jobs are offered only to its capabilities. */
  private readonly firstHeartbeat: Promise<void>
  private markHeartbeat: () => void = () => undefined

  /** Stops the loops and the taking of new work. */
  private readonly stopping = new AbortController()
  /** Interrupts work in progress (the shutdown timeout ran out). */
  private readonly interrupting = new AbortController()
  private readonly loops: Promise<void>[] = []
  /** Claims of the marketplace refused as naming another contract's instance, logged once each. */
  private readonly refusedClaims = new Set<string>()
  /** Contracts whose instance is being terminated, with that work. */
  private readonly terminations = new Map<string, Promise<void>>()
  /** The marketplace's active list as last read. */
  private active: Contract[] = []
  private longPoll: boolean
  private longPollRetryAt = 0
  private heartbeatOk = false
  private resumed = false
  /** When the marketplace last acknowledged a heartbeat. */
  private lastAcknowledgedAt: number | undefined
  /** Since when requests get no answer (or a server error); cleared by a heartbeat or a contract poll that works. */
  private unreachable: {since: number; message: string} | undefined
  /** The marketplace's refusal of the agent key, until a heartbeat is acknowledged again. */
  private refusal: {code: string; message: string} | undefined
  /** Asked to stop: heartbeats say `draining`, no new work is taken, what runs is finished. */
  private draining = false
  /** The tier-limited count the marketplace last gave. */
  private tierLimited: number | undefined
  private capacity: HeartbeatBody['capacity']
  /** The GPUs of a backend whose devices Outpost hands out, with who holds each (journalled). */
  private gpus: GpuAllocator | undefined
  /** The heartbeat interval in use (the marketplace's, else the configured one). */
  private heartbeatIntervalMs: number
  private readonly siblings: Siblings
  /** Contracts of dead siblings this agent checks, bills and terminates (each logged once when taken over). */
  private readonly adopted = new Set<string>()
  /** The tier-limited count last logged. */
  private tierLimitLogged = 0
  /** Resolves once the active list was read: usage is reported only then (at once, so a restart bills what accrued). */
  private readonly firstSync: Promise<void>
  private markSynced: () => void = () => undefined
  private readonly archive: UsageArchive
  private readonly healthArchive: HealthArchive
  /** The state disk: when it is full the agent takes no new work (see StateDisk). */
  readonly disk: StateDisk

  constructor(private readonly options: AgentOptions) {
    this.api = options.api
    this.provisioner = options.provisioner
    this.log = options.log
    this.metrics = options.metrics
    this.settings = options.settings
    this.longPoll = options.settings.longPollWaitSeconds > 0
    this.heartbeatIntervalMs = options.settings.heartbeatSeconds * 1000
    this.disk = new StateDisk({dir: options.stateDir, log: options.log, onChange: (full) => this.metrics.stateDiskFull.set(full ? 1 : 0)})
    this.agentId = agentIdentity(options.stateDir, this.disk)
    this.siblings = new Siblings(this.agentId)
    this.firstSync = new Promise((resolve) => (this.markSynced = resolve))
    this.firstHeartbeat = new Promise((resolve) => (this.markHeartbeat = resolve))
    const journalFile = journalPath(options.stateDir)
    const {entries, skipped} = readJournal(journalFile)
    if (skipped > 0) this.log.warn({journal: journalFile, lines: skipped}, 'journal lines that do not parse were skipped (a write cut short by a crash or a full disk)')
    this.state = journalState(entries)
    this.journal = new Journal(journalFile, this.disk)
    this.archive = new UsageArchive(options.stateDir, this.disk)
    this.healthArchive = new HealthArchive(options.stateDir, this.disk)
    const onApiError = (error: unknown) => this.noteApiError(error)
    this.outbox = new Outbox(options.stateDir)
    this.reporter = new Reporter({
      outbox: this.outbox,
      api: options.api,
      journal: this.journal,
      log: options.log,
      onApiError,
      onDepth: (depth) => this.metrics.outboxDepth.set(depth),
      confirm: (report) => this.confirm(report),
      disk: this.disk,
      ...(options.jobs ? {submitResult: options.jobs.api.submitResult.bind(options.jobs.api)} : {}),
    })
    this.jobLoop = options.jobs
      ? new JobLoop({
          api: options.jobs.api,
          key: options.key,
          stateDir: options.stateDir,
          journal: this.journal,
          reporter: this.reporter,
          journalLeases: this.state.leases,
          executors: options.jobs.executors,
          settings: {...options.jobs.settings, longPollWaitSeconds: options.settings.longPollWaitSeconds, pollIntervalSeconds: options.settings.pollIntervalSeconds},
          log: options.log,
          metrics: options.metrics,
          disk: this.disk,
          free: () => this.jobsFree(),
          gpus: () => this.gpus,
          onApiError,
          stopping: this.stopping.signal,
          interrupting: this.interrupting.signal,
          ...(options.jobs.attest ? {attest: options.jobs.attest} : {}),
        })
      : undefined
    const jobLoop = this.jobLoop
    const auctions = options.jobs?.auctions
    this.auctionEngine =
      jobLoop && auctions && auctions.config.enabled && options.jobs
        ? this.auctionEngineFor(options.jobs, auctions, jobLoop)
        : undefined
    this.queue = new WorkQueue<Contract>({
      concurrency: options.settings.maxConcurrentProvisions,
      idOf: (contract) => contract.contract_id,
      work: (contract, resumed) => this.provisionContract(contract, resumed),
      onUnexpected: (id, error) => this.log.error({contract_id: id, err: describeError(error)}, 'unexpected error while handling the contract'),
      retryDelayMs: () => new Backoff().next() + DECLINE_MS.retry,
    })
    this.offerings = new OfferingBook({offerings: options.offerings, published: (signal) => options.api.offerings({signal, retry: QUICK_RETRY})})
    this.locks = new ContractLocks({api: options.api, ttlSeconds: options.settings.lockTtlSeconds, log: options.log, onApiError, retry: QUICK_RETRY})
    this.bidEngine = options.bidding
      ? new BidEngine({
          api: options.api,
          config: options.bidding.config,
          script: options.bidding.script,
          readCapacity: () => this.provisioner.capacity(this.stopping.signal),
          held: () => this.heldContracts(),
          log: options.log,
          metrics: options.metrics,
          longPollWaitSeconds: options.settings.longPollWaitSeconds,
          retry: QUICK_RETRY,
        })
      : undefined
  }

  /** Who holds each GPU device now, by device id (for the GPU metrics' labels). */
  gpuHolders(): Map<string, string> {
    return this.gpus?.holdings() ?? new Map()
  }

  /**
   * Ready: the agent can do its job now. The previous run's work was taken up, the marketplace answers, accepts the
   * agent key and acknowledged a heartbeat lately, and the agent takes new work (it is not draining, its disk has room).
   */
  readiness(now = Date.now()): Readiness {
    const verdict = judgeReadiness({
      now,
      resumed: this.resumed && (this.jobLoop?.ready ?? true),
      lastAcknowledgedAt: this.lastAcknowledgedAt,
      heartbeatIntervalMs: this.heartbeatIntervalMs,
      unreachable: this.unreachable,
      refusal: this.refusal,
      draining: this.draining,
      diskFull: this.disk.full,
    })
    return {
      ...verdict,
      status: this.draining ? 'draining' : 'active',
      version: this.options.version,
      agent_id: this.agentId,
      pid: process.pid,
      last_heartbeat_acknowledged_at: this.lastAcknowledgedAt ?? null,
      heartbeat_interval_seconds: this.heartbeatIntervalMs / 1000,
      outbox_depth: this.reporter.depth,
      in_flight: this.queue.runningCount + this.terminations.size + (this.jobLoop?.activeLeases ?? 0),
      active_contracts: this.active.length,
      tier_limited_contracts: this.tierLimited ?? null,
    }
  }

  /**
   * The start of a drain (PROTOCOL §5): no new work from now on, and the marketplace is told at once with a `draining`
   * heartbeat (best effort: a marketplace that can't be reached learns it from the heartbeats stopping). stop() then
   * finishes what runs.
   */
  async drain(heartbeatTimeoutMs = DRAIN_HEARTBEAT_MS): Promise<void> {
    if (this.draining) return
    this.draining = true
    this.log.info({in_flight: this.queue.runningCount + this.terminations.size}, 'draining: no new work is taken; what runs is finished, then the agent stops')
    try {
      await this.heartbeat(AbortSignal.any([this.interrupting.signal, AbortSignal.timeout(heartbeatTimeoutMs)]))
    } catch (error) {
      this.noteApiError(error)
      this.log.warn({err: describeError(error)}, 'the marketplace was not told of the drain (the draining heartbeat failed)')
    }
  }

  /** Starts every loop and returns at once; stop() ends them. */
  async start(): Promise<void> {
    await this.prepare()
    const {settings} = this
    this.loops.push(
      this.loop('heartbeat', () => this.heartbeat()),
      this.loop('contracts', () => this.pollContracts()),
      this.loop('active contracts', async () => (await this.syncActive(), settings.activeSyncSeconds * 1000)),
      this.loop('health', async () => (await this.reportHealth(), settings.healthCheckIntervalSeconds * 1000), settings.healthCheckIntervalSeconds * 1000),
      // At once after the first read of the active list: what accrued before a restart is billed without waiting.
      this.loop('usage', async () => (await unlessAborted(this.firstSync, this.stopping.signal), await this.reportUsage(), settings.usageIntervalSeconds * 1000)),
      this.loop('reconcile', async () => (await this.reconcile(), settings.reconcileIntervalSeconds * 1000)),
      this.loop('state disk', async () => (this.disk.retry(), DISK_RETRY_MS)),
    )
    const engine = this.bidEngine
    if (engine) this.loops.push(this.loop('bidding', () => engine.round(this.stopping.signal)))
    const jobs = this.jobLoop
    // A draining agent leases nothing new; the leases it holds run on (stop() waits for them).
    if (jobs) this.loops.push(this.loop('jobs', async () => (await unlessAborted(this.firstHeartbeat, this.stopping.signal), this.draining ? DRAIN_IDLE_MS : await jobs.round())))
    const auctions = this.auctionEngine
    if (auctions) this.loops.push(this.loop('auctions', async () => (await unlessAborted(this.firstHeartbeat, this.stopping.signal), await auctions.round(this.stopping.signal))))
  }

  /** One round of everything, then returns: for cron and CI. Throws when the marketplace could not be reached. */
  async runOnce(): Promise<Record<ContractResult, number> & {outboxLeft: number}> {
    await this.prepare()
    if (this.bidEngine) this.log.info({}, 'bidding is not run with --once: a bid has to be followed until its order closes')
    if (this.jobLoop) this.log.info({}, 'jobs are not run with --once: a lease has to be renewed until its result is in')
    await this.heartbeat()
    await this.reconcile()
    const {contracts, tierLimited} = await this.api.pendingWork(0, {signal: this.stopping.signal})
    await this.noteTierLimit(tierLimited)
    if (this.disk.hasRoom()) {
      for (const contract of contracts) if (this.accepts(contract)) this.queue.enqueue(contract, false)
    }
    // The round ends within a lock TTL (longer than any provisioning) even if the marketplace goes away meanwhile;
    // what is left is checkpointed by stop() and the outbox.
    const budget = new AbortController()
    const timer = setTimeout(() => budget.abort(), this.settings.lockTtlSeconds * 1000)
    try {
      await unlessAborted(this.queue.idle(), budget.signal)
      await this.syncActive()
      await unlessAborted(Promise.all(this.terminations.values()), budget.signal)
      await this.reportHealth()
      await this.reportUsage()
      await this.reporter.flush(budget.signal)
    } finally {
      // A pending timer would keep the process alive after the round.
      clearTimeout(timer)
      budget.abort()
    }
    return {...this.outcomes, outboxLeft: this.reporter.depth}
  }

  /**
   * Stops taking work, lets work in progress finish for up to `timeoutMs`, then interrupts it (the journal and the
   * outbox keep what a restart needs), releases the locks of interrupted contracts, and closes the provisioner.
   */
  async stop(timeoutMs: number): Promise<{interrupted: number; outboxLeft: number}> {
    const deadline = Date.now() + timeoutMs
    this.stopping.abort()
    for (const contract of this.queue.stop()) {
      this.log.info({contract_id: contract.contract_id}, 'not started: the agent is shutting down (it stays pending for the next run)')
    }
    const inFlight = this.queue.runningCount
    const timeLeft = () => Math.max(0, deadline - Date.now())
    const timer = setTimeout(() => this.interrupting.abort(new Error('shutdown timeout')), timeLeft())
    const jobsInFlight = this.jobLoop?.stop() ?? Promise.resolve(0)
    await Promise.all([this.queue.idle(), ...this.terminations.values(), jobsInFlight])
    // The timer interrupts at the deadline (no AbortSignal.timeout: its listener would hold the process open after stop).
    await this.reporter.flush(this.interrupting.signal)
    clearTimeout(timer)
    this.interrupting.abort(new Error('shutdown'))
    this.reporter.close()
    await Promise.all(this.loops)
    await this.provisioner.close?.()
    this.disk.retry()
    if (this.reporter.waitingForDisk > 0) {
      this.log.error(
        {reports: this.reporter.waitingForDisk, journal_entries: this.journal.waiting},
        'reports neither accepted nor written (the state disk is still full) end with this run: the next one redoes that work from the marketplace state',
      )
    }
    this.journal.close()
    this.outbox.close()
    const outboxLeft = this.reporter.depth
    this.log.info({in_flight: inFlight, outbox_left: outboxLeft}, outboxLeft > 0 ? 'stopped; reports left in the outbox are sent by the next run' : 'stopped')
    return {interrupted: inFlight, outboxLeft}
  }

  /** The previous run's leftovers: its unsent reports, then the contracts it had started and not finished. */
  private async prepare(): Promise<void> {
    try {
      const capacity = await this.provisioner.capacity()
      if (capacity) {
        this.capacity = {cpu_cores: capacity.cpuCores, memory_mb: capacity.memoryMb, storage_gb: capacity.storageGb, gpu_count: capacity.gpuCount, ...(capacity.gpuModels ? {gpu_models: capacity.gpuModels} : {})}
      }
    } catch (error) {
      this.log.warn({err: describeError(error)}, 'could not read the provisioner capacity: heartbeats go without it')
    }
    // Jobs are offered only to a heartbeat with a capacity (§12): without the provisioner's, this host's.
    if (this.jobLoop && !this.capacity) this.capacity = {cpu_cores: cpus().length, memory_mb: Math.floor(totalmem() / 1024 / 1024), storage_gb: 0, gpu_count: 0}
    try {
      this.gpus ??= await openGpuAllocator(this.provisioner, this.state.gpus, this.journal)
    } catch (error) {
      this.log.warn({err: describeError(error)}, 'could not read the GPUs the provisioner hands out: GPU contracts fail until a restart reads them')
    }
    this.reporter.replay()
    for (const contract of this.state.unfinished) {
      if (this.queue.holds(contract.contract_id)) continue
      this.log.info({contract_id: contract.contract_id}, 'resuming a contract the previous run started and did not finish')
      this.queue.enqueue(contract, true)
    }
    this.resumed = true
  }

  private async loop(name: string, round: () => Promise<number>, firstDelayMs = 0): Promise<void> {
    const backoff = new Backoff()
    const signal = this.stopping.signal
    await pause(firstDelayMs, signal)
    while (!signal.aborted) {
      let delay: number
      try {
        delay = await round()
        if (backoff.failures > 0) this.log.info({loop: name}, 'recovered')
        backoff.reset()
      } catch (error) {
        if (signal.aborted) break
        this.noteApiError(error)
        delay = backoff.next()
        if (backoff.failures === 1 || backoff.failures % 10 === 0) {
          this.log.warn({loop: name, failures: backoff.failures, retry_in_ms: delay, err: describeError(error)}, `${name} failed: retrying with backoff`)
        }
      }
      await pause(delay, signal)
    }
  }

  private noteApiError(error: unknown): void {
    if (!(error instanceof ApiError)) return
    this.metrics.apiErrors.inc({code: error.apiCode})
    if (error.status === 0 || error.status >= 500) this.unreachable ??= {since: Date.now(), message: error.message}
    if (KEY_REFUSALS.has(error.apiCode)) this.refusal = {code: error.apiCode, message: error.message}
  }

  /** The marketplace answered a heartbeat or a contract poll. */
  private noteReachable(): void {
    if (this.unreachable) this.log.info({down_seconds: Math.round((Date.now() - this.unreachable.since) / 1000)}, 'the marketplace answers again')
    this.unreachable = undefined
  }

  private async heartbeat(signal: AbortSignal = this.stopping.signal): Promise<number> {
    const answer = await this.api.heartbeat(
      {
        status: this.draining ? 'draining' : 'active',
        version: this.options.version,
        provisioner_type: this.provisioner.type,
        capabilities: [...CAPABILITIES, ...(this.jobLoop?.capabilities() ?? [])],
        active_contracts: this.active.length,
        ...(this.jobLoop ? {active_leases: this.jobLoop.activeLeases} : {}),
        ...(this.capacity ? {capacity: this.capacity, free: this.free(this.capacity)} : {}),
        agent_id: this.agentId,
      },
      {signal, retry: QUICK_RETRY},
    )
    const intervalSeconds = heartbeatInterval(answer.next_heartbeat_seconds, this.settings.heartbeatSeconds)
    this.heartbeatIntervalMs = intervalSeconds * 1000
    this.siblings.update(answer.agents)
    if (!this.heartbeatOk) {
      this.log.info(
        {next_heartbeat_seconds: answer.next_heartbeat_seconds, interval_seconds: intervalSeconds, sibling_dead_after_seconds: this.siblingDeadAfterMs() / 1000},
        answer.agents === undefined
          ? 'the marketplace acknowledged the heartbeat; it lists no sibling agents, so contracts of a dead sibling are not taken over'
          : 'the marketplace acknowledged the heartbeat',
      )
    }
    this.heartbeatOk = true
    this.markHeartbeat()
    this.lastAcknowledgedAt = Date.now()
    this.refusal = undefined
    this.noteReachable()
    this.metrics.lastHeartbeat.set(this.lastAcknowledgedAt / 1000)
    return intervalSeconds * 1000
  }

  /** What is not in use now: the capacity less the contracts held here and the jobs running here. */
  private free(capacity: NonNullable<HeartbeatBody['capacity']>): NonNullable<HeartbeatBody['free']> {
    const free = freeCapacity(capacity, this.heldContracts().holding, this.gpus)
    const jobs = this.jobLoop?.held()
    if (!jobs) return free
    return {
      ...free,
      cpu_cores: Math.max(0, free.cpu_cores - jobs.cpu_cores),
      memory_mb: Math.max(0, free.memory_mb - jobs.memory_mb),
      // The allocator's count already leaves out the devices jobs hold.
      gpu_count: this.gpus ? free.gpu_count : Math.max(0, free.gpu_count - jobs.gpu_count),
    }
  }

  private auctionEngineFor(jobs: NonNullable<AgentOptions['jobs']>, auctions: NonNullable<NonNullable<AgentOptions['jobs']>['auctions']>, jobLoop: JobLoop): AuctionEngine {
    const {executors} = jobs
    return new AuctionEngine({
      api: jobs.api,
      config: auctions.config,
      script: auctions.script,
      kinds: jobs.settings.kinds.filter((kind) => executors.has(kind)),
      estimate: async (job, program, input) => executors.get(job.kind)?.estimate({job: {...job, resources: {...job.resources, gpu_count: job.resources.gpu_count ?? 0}}, program, input}),
      calibrate: async (kind, signal) => executors.get(kind)?.calibrate?.(signal),
      runSlots: jobs.settings.maxConcurrent,
      journal: new AuctionJournal(auctionJournalPath(this.options.stateDir)),
      log: this.log,
      metrics: createAuctionMetrics(this.metrics.registry),
      onWon: ({lease, job}) => jobLoop.runWon(lease, job),
      longPollWaitSeconds: this.settings.longPollWaitSeconds,
      retry: QUICK_RETRY,
    })
  }

  private jobsFree(): {cpu_cores: number; memory_mb: number; gpu_count: number} | undefined {
    return this.capacity ? this.free(this.capacity) : undefined
  }

  // ---- new contracts ----

  private async pollContracts(): Promise<number> {
    await this.queue.room()
    // No new work while the state disk is full: a contract taken now could not be journaled.
    if (!this.disk.hasRoom()) await this.disk.room(this.stopping.signal)
    if (this.stopping.signal.aborted) return 0
    if (!this.longPoll && this.settings.longPollWaitSeconds > 0 && Date.now() >= this.longPollRetryAt) this.longPoll = true
    const wait = this.longPoll ? this.settings.longPollWaitSeconds : 0
    // Taken before the poll: a contract in hand that moves while the poll is out still wakes the next one.
    const inHandMoved = this.inHandMoved.promise
    let contracts: Contract[]
    try {
      const pending = await this.api.pendingWork(wait, {signal: this.stopping.signal, retry: QUICK_RETRY})
      this.noteReachable()
      contracts = pending.contracts
      await this.noteTierLimit(pending.tierLimited)
    } catch (error) {
      if (wait > 0 && isLongPollFailure(error)) {
        this.longPoll = false
        this.longPollRetryAt = Date.now() + LONG_POLL_RETRY_MS
        this.noteApiError(error)
        this.log.warn({err: describeError(error), poll_interval_seconds: this.settings.pollIntervalSeconds}, 'long poll failed: polling at an interval instead')
        return 0
      }
      throw error
    }
    // A drain that began during the poll takes none of what it brought.
    const fresh = this.draining ? [] : contracts.filter((contract) => this.accepts(contract))
    for (const contract of fresh) this.queue.enqueue(contract, false)
    if (!this.longPoll) return this.settings.pollIntervalSeconds * 1000
    if (fresh.length === 0 && contracts.length > 0) {
      // Only contracts already in hand, which a long poll returns at once while they are still `accepted`: polled
      // again as soon as one of them is reported `provisioning` (or given up), and at the latest after IDLE_POLL_MS, so
      // that a contract created meanwhile waits milliseconds, not the whole interval.
      // Its own signal, cancelled when the contracts move first: a pause left waiting on the agent's long-lived
      // stopping signal would hold a listener on it after every such poll (MaxListenersExceededWarning).
      const waited = new AbortController()
      await Promise.race([inHandMoved, pause(IDLE_POLL_MS, AbortSignal.any([this.stopping.signal, waited.signal]))])
      waited.abort()
    }
    return 0
  }

  /** A contract in hand left `accepted` here: wakes a poll that waits on the contracts in hand. */
  private noteInHandMoved(): void {
    const moved = this.inHandMoved
    this.inHandMoved = movement()
    moved.resolve()
  }

  /**
   * The marketplace holds back `count` accepted contracts for the stake tier (when it says): a log line each time the
   * count changes, with what the next tier takes, and a gauge.
   */
  private async noteTierLimit(count: number | undefined): Promise<void> {
    if (count === undefined) return
    this.tierLimited = count
    this.metrics.tierLimitedContracts.set(count)
    if (count === this.tierLimitLogged) return
    this.tierLimitLogged = count
    if (count === 0) {
      this.log.info({}, 'no contract waits on the stake tier limit any more')
      return
    }
    let details: Record<string, unknown> = {waiting: count}
    let advice = 'stake more to lift it (`outpost stake deposit`)'
    try {
      const stake = await this.api.stake({signal: this.stopping.signal, retry: QUICK_RETRY})
      const staked = parseAmount(stake.staked)
      const next = nextTier(staked)
      details = {...details, tier: stake.tier, max_concurrent_contracts: stake.max_concurrent_contracts, staked: stake.staked}
      if (next) {
        const needed = formatAmount(next.minimumMicro - staked)
        details = {...details, next_tier: next.name, next_max_concurrent_contracts: next.maxConcurrent, stake_needed: needed}
        advice = `staking ${needed} more (tier ${next.name}) allows ${next.maxConcurrent ?? 'unlimited'}`
      }
    } catch (error) {
      this.noteApiError(error)
      details = {...details, err: describeError(error)}
    }
    const allows = typeof details.max_concurrent_contracts === 'number' ? `: the tier allows ${details.max_concurrent_contracts} at once` : ''
    this.log.warn(details, `${count} contract${count === 1 ? '' : 's'} wait${count === 1 ? 's' : ''} on the stake tier limit${allows}; ${advice}`)
  }

  /** Whether a polled contract is new work; one this agent has declined recently was logged when it was declined. */
  private accepts(contract: Contract): boolean {
    return !this.terminations.has(contract.contract_id) && this.queue.accepts(contract.contract_id)
  }

  /** For the bid engine: the active list, and the contracts in hand that are not on it yet. */
  private heldContracts(): HeldContracts {
    const provisionedIds = new Set(this.active.map((contract) => contract.contract_id))
    const inHand = this.queue.held().filter((contract) => !provisionedIds.has(contract.contract_id))
    return {holding: [...this.active, ...inHand], provisionedIds}
  }

  private count(result: ContractResult): void {
    this.outcomes[result]++
    this.metrics.contracts.inc({result})
  }

  private done(contractId: string, outcome: 'provisioned' | 'failed' | 'skipped', reason?: string): void {
    this.journal.note({event: 'contract_done', contract_id: contractId, outcome, reason})
    this.noteInHandMoved()
    // A contract that did not get its machine gives its devices back (a provisioned one keeps them until terminated).
    if (outcome !== 'provisioned') this.gpus?.release(contractHolder(contractId))
    this.count(outcome)
  }

  // ---- provisioning, one contract: lock, report `provisioning`, find or create, hand over, unlock ----

  private async provisionContract(contract: Contract, resumed: boolean): Promise<void> {
    // Written before the lock is asked for: a crash right after locking still finds this contract on restart.
    if (this.disk.hasRoom()) this.journal.append({event: 'provision_started', contract_id: contract.contract_id, contract})
    if (this.disk.full) {
      // No room to journal it (or the disk filled meanwhile): taken up again once there is.
      this.queue.retryLater(contract, resumed)
      return
    }
    if (!(await this.lock(contract, resumed))) return
    const kept = this.locks.keep(contract.contract_id)
    const signal = AbortSignal.any([this.interrupting.signal, kept.lost])
    try {
      await this.provisionLocked(contract, signal)
    } finally {
      kept.stop()
    }
  }

  private async provisionLocked(contract: Contract, signal: AbortSignal): Promise<void> {
    if (!(await this.reportStarting(contract, signal))) return
    if (!(await this.asRenterAsked(contract, signal))) return
    const gpus = await this.allocateGpus(contract)
    if (gpus === false) return
    const made = await this.findOrCreate(contract, signal, gpus)
    if (!made) return
    const id = contract.contract_id
    const at = Date.now()
    this.journal.append({event: 'instance_ready', contract_id: id, external_id: made.instance.externalId, adopted: made.adopted}, at)
    noteReady(this.state, id, at)
    await this.handOver(contract, made, signal)
  }

  /** True when the lock is held; refused, the contract is skipped for a while; unanswered, it is tried again later. */
  private async lock(contract: Contract, resumed: boolean): Promise<boolean> {
    const id = contract.contract_id
    const attempt = await this.locks.acquire(id, follow(this.interrupting.signal))
    if (attempt.outcome === 'refused') {
      const {apiCode, message} = attempt.error
      const locked = apiCode === 'locked'
      this.log.info({contract_id: id, code: apiCode}, locked ? 'skipped: another agent holds its lock' : `skipped: the lock was refused (${message})`)
      this.queue.decline(id, locked ? DECLINE_MS.locked : DECLINE_MS.refused)
      this.done(id, 'skipped', apiCode)
      return false
    }
    if (attempt.outcome === 'unreachable') {
      this.log.warn({contract_id: id, err: describeError(attempt.error)}, 'not started: could not reach the marketplace to lock it; will try again')
      this.queue.retryLater(contract, resumed)
      return false
    }
    if (!resumed) {
      const reactionMs = Math.max(0, Date.now() - contract.created_at)
      this.metrics.reactionLatency.observe(reactionMs / 1000)
      this.log.debug({contract_id: id, reaction_ms: reactionMs}, 'lock acquired')
    }
    return true
  }

  /** Reports `provisioning`: also the check that the contract is still ours to provision, before anything is created. */
  private async reportStarting(contract: Contract, signal: AbortSignal): Promise<boolean> {
    const id = contract.contract_id
    try {
      await this.api.reportProvisioning(id, {status: 'provisioning'}, {signal, retry: QUICK_RETRY})
      this.noteInHandMoved()
      return true
    } catch (error) {
      this.noteApiError(error)
      if (error instanceof ApiError && error.refused) {
        this.log.info({contract_id: id, code: error.apiCode}, `skipped: the marketplace refuses to start provisioning it (${error.message})`)
        this.queue.decline(id, error.apiCode === 'tier_limit' ? DECLINE_MS.retry : DECLINE_MS.refused)
        this.done(id, 'skipped', error.apiCode)
        await this.locks.release(id)
      } else if (signal.aborted) {
        await this.interrupted(id, 'interrupted before provisioning started')
      } else {
        this.log.warn({contract_id: id, err: describeError(error)}, 'not started: could not report provisioning; will try again')
        // Marked resumed: its reaction latency was measured when the lock was taken.
        this.queue.retryLater(contract, true)
      }
      return false
    }
  }

  /**
   * PROTOCOL §6, before anything is made or sealed: the contract is what its renter signed for (the key that gets the
   * credentials, the SSH key, the offering, the instance config), and asks no more than the offering it names sells
   * here (this agent's own [[offerings]], or the order's requirements). False when it is not (refused for good, and
   * reported) or when the offerings could not be read (it is tried again later).
   */
  private async asRenterAsked(contract: Contract, signal: AbortSignal): Promise<boolean> {
    const id = contract.contract_id
    // The request's host is not compared with this agent's: a renter and an agent may reach one marketplace by
    // different names (a proxy, an internal address), and the signature, offering and date already tie it to this contract.
    let check = verifyContractRequest(contract)
    if (!check.ok && check.reason === 'unknown_offering') {
      try {
        const offering = await this.offerings.lookup(contract.offering_id, signal)
        if (offering.kind === 'found') check = verifyContractRequest(contract, offering.terms)
      } catch (error) {
        this.noteApiError(error)
        if (signal.aborted) {
          await this.interrupted(id, 'interrupted while reading the offerings')
        } else {
          this.log.warn({contract_id: id, err: describeError(error)}, "not started: could not read the marketplace's offerings to bound the contract by; will try again")
          this.queue.retryLater(contract, true)
        }
        return false
      }
    }
    if (check.ok) return true
    this.log.error(
      {contract_id: id, refusal: check.reason, detail: check.detail, offering_id: contract.offering_id, requester_pubkey: contract.requester_pubkey, offerings_configured: !this.offerings.empty},
      "refused: the contract is not what its renter signed for, or asks more than this provider sells; nothing was made or sealed",
    )
    const category = refusalCategory(check.reason)
    const reason = category === 'request_refused' ? `${check.reason}: ${check.detail}` : check.detail
    await this.failed(contract, {detail: `${check.reason}: ${check.detail}`, category, reason, retryPossible: false})
    return false
  }

  /**
   * The contract's devices, journalled before the instance is made (a resumed contract gets its own again); false
   * when they can't be had, and the contract has failed: permanently when this host could never give them.
   */
  private async allocateGpus(contract: Contract): Promise<readonly GpuUnit[] | undefined | false> {
    if (contract.gpu_count === 0 || !this.gpus) return undefined
    try {
      return allocateForContract(this.gpus, contract)
    } catch (error) {
      if (!(error instanceof GpuShortageError)) throw error
      await this.failed(contract, {detail: error.message, category: 'gpu_unavailable', retryPossible: !error.permanent})
      return false
    }
  }

  /** The instance a previous run made for the contract, else a new one; undefined when neither could be had. */
  private async findOrCreate(contract: Contract, signal: AbortSignal, gpus: readonly GpuUnit[] | undefined): Promise<{instance: ProvisionedInstance; adopted: boolean} | undefined> {
    const id = contract.contract_id
    try {
      const existing = await this.provisioner.find(id, signal)
      if (existing) {
        this.log.info({contract_id: id, external_id: existing.externalId}, "found the contract's instance (made before a restart, or by a dead sibling agent): not creating another")
        return {instance: existing, adopted: true}
      }
      this.log.info({contract_id: id, provisioner: this.provisioner.type}, 'provisioning')
      return {instance: await this.provisioner.provision(contract, signal, gpus), adopted: false}
    } catch (error) {
      const outOfSpace = outOfSpaceCause(error)
      if (error instanceof ProvisionAbortedError || signal.aborted) {
        await this.interrupted(id, describeError(error))
      } else if (outOfSpace) {
        // This host's disk is full, not the contract's fault: no failure is reported (it would spend one of its attempts).
        this.disk.noteFailure(`the ${this.provisioner.type} backend`, outOfSpace)
        await this.interrupted(id, describeError(error))
        this.queue.retryLater(contract, true)
      } else {
        const known = error instanceof ProvisionError
        await this.failed(contract, {detail: describeError(error), category: known ? error.category : 'backend_error', retryPossible: known ? error.retryPossible : true})
      }
      return undefined
    }
  }

  /**
   * Seals the credentials to the renter and reports `provisioned`. A report the marketplace refuses, and whose effect
   * its state does not show, leads to a look at where the contract stands before anything is destroyed.
   */
  private async handOver(contract: Contract, {instance, adopted}: {instance: ProvisionedInstance; adopted: boolean}, signal: AbortSignal): Promise<void> {
    const id = contract.contract_id
    let wireInstance: Instance
    try {
      wireInstance = this.wireInstance(contract, instance)
    } catch (error) {
      // The renter key can't be sealed to: nobody could ever use this machine.
      await this.terminateInstance(instance, 'its credentials cannot be sealed to the renter key')
      return this.failed(contract, {detail: describeError(error), category: 'credentials_unsealable', retryPossible: false})
    }
    const settlement = await unlessAborted(this.reporter.send({kind: 'provisioning', contract_id: id, status: 'provisioned', instance: wireInstance, unlock: true}), signal)
    if (settlement === undefined) return this.interrupted(id, 'the provisioned report is kept in the outbox', false)
    if (settlement.delivered) return this.handedOver(contract, instance, adopted)
    await this.afterRefusal(contract, instance, settlement.reason, signal)
  }

  private handedOver(contract: Contract, instance: ProvisionedInstance, adopted: boolean): void {
    this.done(contract.contract_id, 'provisioned')
    this.metrics.timeToReady.observe(Math.max(0, Date.now() - contract.created_at) / 1000)
    this.log.info({contract_id: contract.contract_id, external_id: instance.externalId, adopted}, 'provisioned')
  }

  /**
   * The provisioned report was refused. Only what the marketplace's state shows decides: the instance is ours after all,
   * or the contract was cancelled before it was provisioned (terminate, report terminated), or another instance runs it
   * or it ended (terminate), or it is pending again (keep the instance: whoever provisions it next finds it). Nothing
   * is destroyed while the state can't be read.
   */
  private async afterRefusal(contract: Contract, instance: ProvisionedInstance, reason: string, signal: AbortSignal): Promise<void> {
    const id = contract.contract_id
    const standing = await this.standingOf(id, signal)
    if (standing === undefined) return this.interrupted(id, 'the provisioned report was refused and the marketplace could not be read: the instance is kept for the next run', false)
    if (standing.kind === 'pending') return this.interrupted(id, 'the provisioned report was refused and the contract is pending again: the instance is kept for whoever provisions it')
    const current = standing.kind === 'active' ? standing.contract : undefined
    if (current?.instance?.external_id === instance.externalId) return this.handedOver(contract, instance, true)
    const cancelledBeforeProvisioned = current !== undefined && current.termination_pending === true && !current.instance
    this.log.warn(
      {contract_id: id, reason, status: current?.status ?? 'ended', its_instance: current?.instance?.external_id},
      'the marketplace refused the provisioned report and its state does not show this instance: terminating it',
    )
    try {
      await this.terminateInstance(instance, 'its provisioned report was refused')
    } catch (error) {
      // The next run finds it unfinished; reconcile reports it meanwhile.
      this.log.warn({contract_id: id, external_id: instance.externalId, err: describeError(error)}, 'could not terminate the instance; will try again')
      return this.interrupted(id, 'termination failed')
    }
    this.done(id, 'failed', reason)
    if (cancelledBeforeProvisioned) void this.reporter.send({kind: 'terminated', contract_id: id})
  }

  /** Reads where the contract stands, again and again until the marketplace answers; undefined once `signal` fires. */
  private async standingOf(contractId: string, signal: AbortSignal): Promise<ContractStanding | undefined> {
    const backoff = new Backoff()
    while (!signal.aborted) {
      try {
        const active = await this.api.activeContracts({signal, retry: QUICK_RETRY})
        const contract = active.find((candidate) => candidate.contract_id === contractId)
        if (contract) return {kind: 'active', contract}
        const pending = await this.api.pendingProvision(0, {signal, retry: QUICK_RETRY})
        return pending.some((candidate) => candidate.contract_id === contractId) ? {kind: 'pending'} : {kind: 'gone'}
      } catch (error) {
        this.noteApiError(error)
        await pause(backoff.next(), signal)
      }
    }
    return undefined
  }

  /**
   * Whether the marketplace's state shows a report's effect (for the reporter, after an answer that could not be read or
   * a refusal): `provisioned` when the active list carries this instance, `terminated` when the contract has left it,
   * `provisioning_failed` when the contract is pending as `accepted` again. Usage can't be read back: never confirmed.
   */
  private async confirm(report: Report): Promise<Confirmation> {
    if (report.kind === 'usage') return 'not_in_effect'
    if (report.kind === 'result') return this.jobLoop ? this.jobLoop.confirm(report) : 'unknown'
    const signal = follow(this.interrupting.signal)
    try {
      if (report.kind === 'provisioning' && report.status === 'provisioning_failed') {
        const pending = await this.api.pendingProvision(0, {signal, retry: QUICK_RETRY})
        return pending.some((contract) => contract.contract_id === report.contract_id && contract.status === 'accepted') ? 'took_effect' : 'not_in_effect'
      }
      const active = await this.api.activeContracts({signal, retry: QUICK_RETRY})
      const listed = active.find((contract) => contract.contract_id === report.contract_id)
      if (report.kind === 'terminated') return listed ? 'not_in_effect' : 'took_effect'
      return listed?.instance && listed.instance.external_id === report.instance?.external_id ? 'took_effect' : 'not_in_effect'
    } catch (error) {
      this.noteApiError(error)
      return 'unknown'
    }
  }

  private wireInstance(contract: Contract, instance: ProvisionedInstance): Instance {
    const sealed = instance.credentials ? sealCredentials(instance.credentials, fromHex(contract.requester_pubkey, 32, 'requester_pubkey')) : undefined
    return {
      external_id: instance.externalId,
      ip_address: instance.ipAddress,
      ...(instance.ipv6Address ? {ipv6_address: instance.ipv6Address} : {}),
      ssh_port: instance.sshPort,
      ...(sealed ? {sealed_credentials: sealed} : {}),
      // ready_at: from when a sibling that takes the contract over bills it.
      details: {...instance.details, agent_id: this.agentId, ready_at: this.state.readyAt.get(contract.contract_id) ?? Date.now()},
    }
  }

  /**
   * Reports the failure: the marketplace (and so the renter) gets the category and the agent's own one-line reason;
   * the detail (what the backend said) stays in the local log and journal.
   */
  private async failed(contract: Contract, failure: ProvisioningFailure): Promise<void> {
    const id = contract.contract_id
    const {detail, category, retryPossible} = failure
    const reported = failureText(category, failure.reason)
    this.log.warn({contract_id: id, reason: detail, reported, retry_possible: retryPossible}, 'provisioning failed')
    this.done(id, 'failed', detail)
    if (retryPossible) this.queue.decline(id, DECLINE_MS.retry)
    const settlement = await unlessAborted(
      this.reporter.send({kind: 'provisioning', contract_id: id, status: 'provisioning_failed', error: reported, retry_possible: retryPossible, unlock: true}),
      this.interrupting.signal,
    )
    if (settlement && !settlement.delivered) this.log.warn({contract_id: id, reason: settlement.reason}, 'the failure report was refused')
  }

  /** Work stopped by shutdown (or a lost lock): the journal keeps it unfinished, so the next run resumes it. */
  private async interrupted(contractId: string, reason: string, release = true): Promise<void> {
    this.count('interrupted')
    this.log.info({contract_id: contractId, reason}, 'interrupted: checkpointed for the next run')
    if (release) await this.locks.release(contractId)
  }

  // ---- active contracts: termination, health, usage ----

  private async syncActive(): Promise<void> {
    this.active = await this.api.activeContracts({signal: this.stopping.signal, retry: QUICK_RETRY})
    this.markSynced()
    this.metrics.activeContracts.set(this.active.length)
    for (const contract of this.active) {
      const id = contract.contract_id
      if (!contract.termination_pending || this.terminations.has(id) || this.queue.holds(id) || this.stopping.signal.aborted) continue
      if (!this.owns(contract)) continue
      this.terminations.set(id, this.endContract(contract).finally(() => this.terminations.delete(id)))
    }
    const listed = new Set(this.active.map((contract) => contract.contract_id))
    for (const id of this.adopted) if (!listed.has(id)) this.adopted.delete(id)
    this.metrics.adoptedContracts.set(this.adopted.size)
  }

  private siblingDeadAfterMs(): number {
    const configured = this.settings.siblingDeadAfterSeconds
    return configured > 0 ? configured * 1000 : 3 * this.heartbeatIntervalMs
  }

  /**
   * Whether this agent looks after the contract's instance: its own, one no agent claims, and one of a sibling agent
   * that is dead (its last heartbeat older than the bound) until that sibling heartbeats again. Health checks, usage
   * and termination are idempotent, so a sibling wrongly taken for dead costs duplicates, never a second instance.
   */
  private owns(contract: Contract): boolean {
    const owner = contract.instance?.details?.agent_id
    if (typeof owner !== 'string' || owner === this.agentId) return true
    const id = contract.contract_id
    const deadForMs = this.siblings.deadFor(owner, this.siblingDeadAfterMs())
    if (deadForMs === undefined) {
      if (this.adopted.delete(id)) this.log.info({contract_id: id, agent_id: owner}, 'the sibling agent heartbeats again: its contract is left to it')
      return false
    }
    if (!this.adopted.has(id)) {
      this.adopted.add(id)
      this.log.warn(
        {contract_id: id, agent_id: owner, last_heartbeat_seconds_ago: Math.round(deadForMs / 1000), dead_after_seconds: this.siblingDeadAfterMs() / 1000},
        'taking over a contract of a dead sibling agent: its health, usage and termination are looked after here',
      )
    }
    return true
  }

  /** A contract that never got an instance here has nothing to terminate: it is reported terminated at once. */
  private async endContract(contract: Contract): Promise<void> {
    const id = contract.contract_id
    const claim = claimOf(contract)
    try {
      await this.terminateInstance(claim, `the contract is ${contract.status}`)
    } catch (error) {
      if (error instanceof InstanceMismatchError) this.refuseClaim(error)
      else this.log.warn({contract_id: id, external_id: claim.externalId, err: describeError(error)}, 'could not terminate the instance; will try again')
      return
    }
    // Its last usage, up to the moment its instance went (the same moment after a restart: the journal has it).
    if (contract.instance) this.queueUsage([{contract, periods: this.periodsOf(contract, this.state.terminatedAt.get(id) ?? Date.now(), true)}])
    // Past the shutdown timeout the report waits in the outbox for the next run.
    const settlement = await unlessAborted(this.reporter.send({kind: 'terminated', contract_id: id}), this.interrupting.signal)
    if (settlement?.delivered) {
      this.count('terminated')
      this.log.info({contract_id: id, status: contract.status}, 'terminated')
    }
  }

  /** Terminates the claim's contract's own instance: the backend refuses a claim that names another one. */
  private async terminateInstance(claim: InstanceClaim, reason: string): Promise<void> {
    await this.provisioner.terminate(claim)
    const at = Date.now()
    this.journal.append({event: 'instance_terminated', external_id: claim.externalId ?? instanceName(claim.contractId), contract_id: claim.contractId, reason}, at)
    if (!this.state.terminatedAt.has(claim.contractId)) this.state.terminatedAt.set(claim.contractId, at)
    this.gpus?.release(contractHolder(claim.contractId))
  }

  /** The marketplace named an instance that is not the contract's: one line, once per claim, and nothing is done. */
  private refuseClaim(error: InstanceMismatchError): void {
    const key = `${error.claim.contractId}/${error.claim.externalId}`
    if (this.refusedClaims.has(key)) return
    this.refusedClaims.add(key)
    this.log.error(
      {contract_id: error.claim.contractId, claimed_external_id: error.claim.externalId, backend_external_ids: error.found},
      "refused: the marketplace names an instance that is not this contract's; nothing was terminated or checked",
    )
  }

  /** Contracts running here: the ones to check and to bill. */
  private runningHere(): Contract[] {
    return this.active.filter((contract) => !contract.termination_pending && contract.instance && this.owns(contract))
  }

  private async reportHealth(): Promise<void> {
    const contracts = this.runningHere()
    const checks: HealthCheck[] = []
    for (let start = 0; start < contracts.length; start += HEALTH_PARALLEL) {
      const slice = contracts.slice(start, start + HEALTH_PARALLEL)
      checks.push(...(await Promise.all(slice.map((contract) => this.checkHealth(contract)))))
    }
    if (checks.length === 0) return
    // Kept before it is sent: the provider's own record of uptime, for a dispute (PROTOCOL §10).
    this.healthArchive.add(checks)
    await this.api.reportHealth(checks, {signal: this.stopping.signal, retry: QUICK_RETRY})
  }

  private async checkHealth(contract: Contract): Promise<HealthCheck> {
    try {
      const health = await this.provisioner.health(claimOf(contract), AbortSignal.timeout(10_000))
      if (health.status !== 'healthy') this.log.warn({contract_id: contract.contract_id, status: health.status, details: health.details}, 'instance not healthy')
      return {
        contract_id: contract.contract_id,
        status: health.status,
        ...(health.uptimeSeconds !== undefined ? {uptime_seconds: health.uptimeSeconds} : {}),
        checked_at: Date.now(),
        // The renter reads them: the backend's own words (node names, errors) stay in the line above.
        ...(health.details ? {details: publicHealthDetails(health.details)} : {}),
      }
    } catch (error) {
      if (!(error instanceof InstanceMismatchError)) {
        this.log.warn({contract_id: contract.contract_id, err: describeError(error)}, 'could not check the health of the instance')
        return {contract_id: contract.contract_id, status: 'unknown', checked_at: Date.now(), details: publicHealthDetails({error: describeError(error)})}
      }
      this.refuseClaim(error)
      return {contract_id: contract.contract_id, status: 'unknown', checked_at: Date.now(), details: {error: 'the instance named for this contract is not its instance here'}}
    }
  }

  private async reportUsage(): Promise<void> {
    const now = Date.now()
    const running = this.runningHere()
    if (running.length === 0) return
    // Billed: what the backend runs for the contract, under the id the marketplace knows, not the marketplace's word alone.
    const here = new Set((await this.provisioner.list(this.stopping.signal)).map((instance) => `${instance.contractId}/${instance.externalId}`))
    const billable = running.filter((contract) => here.has(`${contract.contract_id}/${contract.instance?.external_id}`))
    this.queueUsage(billable.map((contract) => ({contract, periods: this.periodsOf(contract, now, false)})))
  }

  /**
   * The periods of a contract not billed yet, up to `until`: complete ones only while it runs, and with `final` (its
   * instance is gone) the last one cut at `until`. Billing starts when the instance was ready: here (the journal), or
   * where the agent that made it said (a contract taken over from a dead sibling), else when the contract was made.
   */
  private periodsOf(contract: Contract, until: number, final: boolean): UsagePeriod[] {
    const id = contract.contract_id
    const readyAt = contract.instance?.details?.ready_at
    const options = {
      since: this.state.usageReportedUntil.get(id) ?? 0,
      runningFrom: this.state.readyAt.get(id) ?? (typeof readyAt === 'number' ? readyAt : contract.created_at),
      intervalMs: this.settings.usageIntervalSeconds * 1000,
    }
    return final ? periodsUntilEnd({...options, end: until}) : completedPeriods({...options, now: until})
  }

  /** Archives, sends and journals the records of these periods. */
  private queueUsage(work: {contract: Contract; periods: UsagePeriod[]}[]): void {
    const intervalMs = this.settings.usageIntervalSeconds * 1000
    const records: SignedUsageRecord[] = []
    const reportedUntil: Record<string, number> = {}
    for (const {contract, periods} of work) {
      for (const period of periods) records.push(usageRecord(this.options.key, contract, period, intervalMs))
      const last = periods.at(-1)
      if (last) reportedUntil[contract.contract_id] = last.end
    }
    if (records.length === 0) return
    this.archive.add(records)
    for (let start = 0; start < records.length; start += 1000) void this.reporter.send({kind: 'usage', records: records.slice(start, start + 1000)})
    // After the outbox holds them: a crash in between sends the same record ids again, which the marketplace ignores.
    this.journal.append({event: 'usage_queued', periods: reportedUntil})
    for (const [id, end] of Object.entries(reportedUntil)) this.state.usageReportedUntil.set(id, end)
  }

  // ---- reconciliation ----

  private async reconcile(): Promise<void> {
    const listed = await this.provisioner.list(this.stopping.signal)
    const busy = (contractId: string | undefined) =>
      contractId !== undefined && (this.queue.holds(contractId) || this.terminations.has(contractId) || this.reporter.hasPending(contractId))
    const settled = listed.filter((instance) => !busy(instance.contractId))
    const answer = await this.api.reconcile(
      settled.map((instance) => ({external_id: instance.externalId, contract_id: instance.contractId ?? null})),
      {signal: this.stopping.signal, retry: QUICK_RETRY},
    )
    const byId = new Map(settled.map((instance) => [instance.externalId, instance]))
    for (const item of answer.terminate) {
      const instance = byId.get(item.external_id)
      // Between listing and answering, the contract may have been taken up again here.
      if (!instance?.contractId || busy(instance.contractId)) continue
      this.log.info({external_id: item.external_id, contract_id: instance.contractId}, 'reconcile: the contract has ended: terminating its instance')
      await this.terminateInstance({contractId: instance.contractId, externalId: item.external_id}, 'reconcile: contract ended').catch((error: unknown) =>
        this.log.warn({external_id: item.external_id, err: describeError(error)}, 'reconcile: could not terminate; will try again'),
      )
    }
    this.metrics.orphanInstances.set(answer.unknown.length)
    for (const item of answer.unknown) {
      const instance = byId.get(item.external_id)
      const name = instance?.name ?? item.external_id
      this.journal.note({event: 'orphan_found', external_id: item.external_id, name})
      const contractId = instance?.contractId
      if (this.options.pruneOrphans && contractId) {
        this.log.warn({external_id: item.external_id, name}, 'reconcile: instance unknown to the marketplace: destroying it (--prune-orphans)')
        await this.terminateInstance({contractId, externalId: item.external_id}, 'orphan pruned').catch((error: unknown) =>
          this.log.warn({external_id: item.external_id, err: describeError(error)}, 'reconcile: could not destroy the orphan'),
        )
      } else {
        this.log.warn(
          {external_id: item.external_id, name},
          contractId ? 'reconcile: instance unknown to the marketplace: kept (pass --prune-orphans to destroy it)' : 'reconcile: instance unknown to the marketplace and made for no contract: never destroyed',
        )
      }
    }
  }
}

/** Long poll is off when the server or a proxy can't hold a request: it answers 400 to `wait`, or the request times out. */
function isLongPollFailure(error: unknown): boolean {
  if (!(error instanceof ApiError)) return false
  return error.apiCode === 'timeout' || error.apiCode === 'invalid_query' || error.status === 408 || error.status === 504
}

/** The server's interval when PROTOCOL §5 allows it; else (none named, or out of bounds) the configured one. */
export function heartbeatInterval(named: number | undefined, configuredSeconds: number): number {
  const usable = named !== undefined && Number.isInteger(named) && named >= HEARTBEAT_SECONDS.min && named <= HEARTBEAT_SECONDS.max
  return usable ? named : configuredSeconds
}

/** A provisioning failure: `detail` for the local log, `category` and `reason` (the agent's own words) for the marketplace. */
interface ProvisioningFailure {
  detail: string
  category: FailureCategory
  reason?: string
  retryPossible: boolean
}

/** How a refused contract request is reported. */
function refusalCategory(reason: ContractRequestRefusal): FailureCategory {
  if (reason === 'unknown_offering' || reason === 'exceeds_offering') return reason
  return 'request_refused'
}

/** The contract's instance as the marketplace names it: the backend checks the name against its own. */
function claimOf(contract: Contract): InstanceClaim {
  return {contractId: contract.contract_id, ...(contract.instance ? {externalId: contract.instance.external_id} : {})}
}

/**
 * A random id kept in the state dir: it outlives key rotations, and each state dir (each agent) has its own. On a full
 * disk it is used at once and written once there is room.
 */
function agentIdentity(stateDir: string, disk: StateDisk): string {
  const path = join(stateDir, 'agent-id')
  if (existsSync(path)) {
    const text = readFileSync(path, 'utf8').trim()
    if (/^[0-9a-f]{32}$/.test(text)) return text
  }
  const id = randomHex(16)
  const write = () => writeFileAtomic(path, id + '\n', 0o600)
  try {
    write()
  } catch (error) {
    if (!disk.noteFailure(path, error)) throw error
    disk.onRecovery('agent id', write)
  }
  return id
}

/** A promise with its resolve function (Node 20 has no Promise.withResolvers). */
function movement(): {promise: Promise<void>; resolve: () => void} {
  let resolve: () => void = () => undefined
  const promise = new Promise<void>((done) => (resolve = done))
  return {promise, resolve}
}
