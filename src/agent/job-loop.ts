import {existsSync, mkdirSync, readFileSync, rmSync} from 'node:fs'
import {join} from 'node:path'

import {ApiError} from '../core/api/api-error.js'
import type {Job, Lease, Verdict} from '../core/api/job-schemas.js'
import type {JobKind} from '../core/api/job-kinds.js'
import type {JobsApi} from '../core/api/jobs.js'
import {parseAmount} from '../core/decimal.js'
import {describeError} from '../core/errors.js'
import {writeFileAtomic} from '../core/files.js'
import {archiveResultEnvelope} from '../core/result-archive.js'
import {toHex} from '../core/hex.js'
import type {KeyPair, SignedResultEnvelope} from '../core/signing.js'
import {ExecutorError, type Executor, type ExecutorJob} from '../executors/executor.js'
import {jobHolder, type GpuAllocator, type GpuUnit} from '../gpu/allocator.js'
import {Backoff, follow, pause, unlessAborted} from './backoff.js'
import type {Journal, JournalLease} from './journal.js'
import type {AgentLog} from './logger.js'
import type {AgentMetrics} from './metrics.js'
import type {Report} from './outbox.js'
import {checkDigest, DigestMismatchError, ProgramCache} from './program-cache.js'
import type {Confirmation, Reporter, Settlement} from './reporter.js'
import {buildResultEnvelope, type ResultAttester} from './result-envelope.js'
import type {StateDisk} from './state-disk.js'

/** The §12 routes the job loop calls (JobsApi has them all). */
export type JobLoopApi = Pick<JobsApi, 'openJobs' | 'input' | 'program' | 'lease' | 'renew' | 'uploadOutput' | 'fail' | 'leases'>

export interface JobLoopSettings {
  kinds: readonly JobKind[]
  maxConcurrent: number
  /** The least reward, in tokens (a decimal string), of a job of each kind that is leased. */
  minReward: Partial<Record<JobKind, string>>
  longPollWaitSeconds: number
  pollIntervalSeconds: number
}

/** What the host offers jobs, in §5's heartbeat shape. */
export interface JobCapacity {
  cpu_cores: number
  memory_mb: number
  gpu_count: number
}

export interface JobLoopOptions {
  api: JobLoopApi
  key: KeyPair
  stateDir: string
  journal: Journal
  reporter: Reporter
  /** The journal's leases not done, as the previous run left them. */
  journalLeases: ReadonlyMap<string, JournalLease>
  executors: ReadonlyMap<JobKind, Executor>
  settings: JobLoopSettings
  log: AgentLog
  metrics: AgentMetrics
  disk: StateDisk
  /** What is free now for a new job (the heartbeat's `free`, with the jobs running here taken off). */
  free: () => JobCapacity | undefined
  /** The GPUs Outpost hands out, when it does. */
  gpus: () => GpuAllocator | undefined
  onApiError: (error: unknown) => void
  /** Stops the poll and new work. */
  stopping: AbortSignal
  /** Interrupts work in progress (the shutdown timeout ran out): leases stay active for the next run. */
  interrupting: AbortSignal
  /** Adds an attestation to each result (§14), when the host attests. */
  attest?: ResultAttester
}

/** A lease's end, as the journal and the metrics record it. */
type LeaseOutcome = {outcome: 'accepted'; reward?: string} | {outcome: 'rejected'; reason: string} | {outcome: 'failed' | 'expired' | 'refused'; reason: string}

/** How long a job is left alone after it was declined, so a poll that returns it again does not spin. */
const DECLINE_MS = {busy: 2000, leased: 5000, refused: 30_000} as const
/** Between polls that returned only jobs already declined. */
const IDLE_POLL_MS = 500
const QUICK_RETRY = {retries: 1, baseDelayMs: 100, maxDelayMs: 500}
/** An estimate is stretched by this much before it is compared with the time left (the machine's load varies). */
const ESTIMATE_SAFETY = 1.25
/** Time kept after a run for signing, submitting and the marketplace's verification. */
const SUBMIT_MARGIN_MS = 2000
/** A lease is renewed every third of `lease_seconds` (§12), and never less often than this. */
const MAX_RENEW_MS = 60_000

/** The bytes of a job's run, and where the run stands. */
interface Running {
  lease: Lease
  job: Job
  work: Promise<void>
}

/** The fields of a §12 job an executor reads (its GPU count filled in). */
function executorJob(job: Job): ExecutorJob {
  return {...job, resources: {...job.resources, gpu_count: job.resources.gpu_count ?? 0}}
}

function isCode(error: unknown, ...codes: string[]): error is ApiError {
  return error instanceof ApiError && codes.includes(error.apiCode)
}

/** The verdict a lease's state shows, when it shows one. */
function outcomeOfLease(lease: Lease): LeaseOutcome | undefined {
  switch (lease.status) {
    case 'accepted':
      return {outcome: 'accepted', ...(lease.reward ? {reward: lease.reward} : {})}
    case 'rejected':
      return {outcome: 'rejected', reason: lease.reason ?? 'rejected'}
    case 'expired':
      return {outcome: 'expired', reason: lease.reason ?? 'expired'}
    case 'failed':
      return {outcome: 'failed', reason: lease.reason ?? 'failed'}
    default:
      return undefined
  }
}

/**
 * The job-market loop (PROTOCOL §12), a sibling of the contract loop: long polls open jobs, leases the ones this host
 * can run in time and for enough reward, runs each with its executor while renewing the lease, and returns a signed
 * result through the durable outbox. Exactly once across crashes: each lease and its signed result are journalled
 * before they are acted on, and a restarted loop takes up its active leases (resuming the run, resubmitting the same
 * envelope, or failing the lease when time is short). An answer that can't be read is never taken for a verdict.
 */
export class JobLoop {
  private readonly running = new Map<string, Running>()
  private readonly declinedUntil = new Map<string, number>()
  private readonly programs: ProgramCache
  private readonly runsDir: string
  private readonly agentPubkey: string
  private slotWaiters: (() => void)[] = []
  private longPoll: boolean
  /** True once the previous run's leases were taken up (the loop is ready). */
  private takenUp = false
  private takingUp: Promise<void> | undefined

  constructor(private readonly options: JobLoopOptions) {
    this.programs = new ProgramCache(options.stateDir)
    this.runsDir = join(options.stateDir, 'job-runs')
    // What a killed run left: each run starts in an empty folder of its own.
    rmSync(this.runsDir, {recursive: true, force: true})
    mkdirSync(this.runsDir, {recursive: true, mode: 0o700})
    this.agentPubkey = toHex(options.key.publicKey)
    this.longPoll = options.settings.longPollWaitSeconds > 0
  }

  /** §12: the heartbeat capabilities that make the marketplace offer jobs of these kinds. */
  capabilities(): string[] {
    return this.options.settings.kinds.map((kind) => `job:${kind}`)
  }

  get activeLeases(): number {
    return this.running.size
  }

  get ready(): boolean {
    return this.takenUp
  }

  /** The resources the jobs running here hold. */
  held(): JobCapacity {
    let cpu = 0
    let memory = 0
    let gpus = 0
    for (const {job} of this.running.values()) {
      cpu += job.resources.cpu_cores
      memory += job.resources.memory_mb
      gpus += job.resources.gpu_count ?? 0
    }
    return {cpu_cores: cpu, memory_mb: memory, gpu_count: gpus}
  }

  /** Waits for every run in progress to finish or to be interrupted (see `interrupting`). */
  async stop(): Promise<number> {
    const inFlight = this.running.size
    await Promise.all([...this.running.values()].map((running) => running.work))
    for (const executor of new Set(this.options.executors.values())) await executor.close?.().catch(() => undefined)
    return inFlight
  }

  // ---- after a restart ----

  /**
   * Takes up what the previous run left: its own active leases (resumed, or resubmitted with the envelope the
   * journal holds), and journalled leases that are no longer active (their verdict read, or their result sent again).
   */
  async takeUp(): Promise<void> {
    const {journalLeases, log} = this.options
    const active = await this.readLeases('active')
    if (active === undefined) return
    const own = active.filter((lease) => lease.agent_pubkey === this.agentPubkey)
    for (const lease of own) {
      const recorded = journalLeases.get(lease.lease_id)
      const job = recorded?.job ?? lease.job
      if (!job) {
        log.warn({lease_id: lease.lease_id, job_id: lease.job_id}, 'an active lease whose job neither the journal nor the marketplace names: failing it')
        await this.failLease(lease, lease.job_id, {reason: 'the agent lost the job of this lease', retryable: true})
        continue
      }
      if (recorded?.envelope) {
        log.info({lease_id: lease.lease_id, job_id: job.job_id}, 'resubmitting the result the previous run signed')
        this.track(lease, job, (signal) => this.submit(lease, job, recorded.envelope as SignedResultEnvelope, recorded.outputFile, signal))
      } else {
        log.info({lease_id: lease.lease_id, job_id: job.job_id}, 'resuming a lease the previous run held and did not finish')
        this.track(lease, job, (signal) => this.runLeased(lease, job, signal, true))
      }
    }
    const activeIds = new Set(own.map((lease) => lease.lease_id))
    const settled = [...journalLeases.values()].filter(({lease}) => !activeIds.has(lease.lease_id))
    if (settled.length === 0) {
      this.takenUp = true
      return
    }
    const all = await this.readLeases()
    if (all === undefined) return
    for (const recorded of settled) {
      const lease = all.find((candidate) => candidate.lease_id === recorded.lease.lease_id)
      const waiting = this.options.reporter.settlementOf((report) => report.kind === 'result' && report.lease_id === recorded.lease.lease_id)
      if (waiting) {
        this.track(recorded.lease, recorded.job, async () => this.settle(recorded.lease, recorded.job, await unlessAborted(waiting, this.options.interrupting)))
        continue
      }
      const outcome = lease && outcomeOfLease(lease)
      if (outcome) this.record(recorded.lease, recorded.job, outcome)
      else if (lease?.status === 'submitted' && recorded.envelope) {
        const envelope = recorded.envelope as SignedResultEnvelope
        this.track(recorded.lease, recorded.job, (signal) => this.submit(recorded.lease, recorded.job, envelope, recorded.outputFile, signal))
      } else this.record(recorded.lease, recorded.job, {outcome: 'refused', reason: lease ? `the lease is ${lease.status}` : 'the marketplace no longer lists this lease'})
    }
    this.takenUp = true
  }

  /** The provider's leases (of a status), asked again until the marketplace answers; undefined once stopped. */
  private async readLeases(status?: 'active'): Promise<Lease[] | undefined> {
    const backoff = new Backoff()
    const signal = this.options.stopping
    while (!signal.aborted) {
      try {
        return await this.options.api.leases(status, {signal: follow(signal), retry: QUICK_RETRY})
      } catch (error) {
        this.options.onApiError(error)
        if (backoff.failures === 0) this.options.log.warn({err: describeError(error)}, 'could not read the leases to take up: retrying')
        await pause(backoff.next(), signal)
      }
    }
    return undefined
  }

  // ---- new jobs ----

  /** One poll: open jobs, the ones this host takes leased and started. Returns the delay before the next poll. */
  async round(): Promise<number> {
    const {options} = this
    const signal = options.stopping
    await (this.takingUp ??= this.takeUp())
    await unlessAborted(this.slot(), signal)
    if (!options.disk.hasRoom()) await options.disk.room(signal)
    if (signal.aborted) return 0
    const wait = this.longPoll ? options.settings.longPollWaitSeconds : 0
    let jobs: Job[]
    try {
      jobs = await options.api.openJobs(wait, {signal: follow(signal), retry: QUICK_RETRY})
    } catch (error) {
      if (wait > 0 && error instanceof ApiError && (error.apiCode === 'timeout' || error.apiCode === 'invalid_query')) {
        this.longPoll = false
        options.log.warn({err: describeError(error)}, 'long poll of open jobs failed: polling at an interval instead')
        return 0
      }
      throw error
    }
    let started = 0
    for (const job of jobs) {
      if (signal.aborted || this.running.size >= options.settings.maxConcurrent) break
      if (!this.fresh(job.job_id)) continue
      if (await this.take(job)) started++
    }
    if (!this.longPoll) return options.settings.pollIntervalSeconds * 1000
    return started === 0 && jobs.length > 0 ? IDLE_POLL_MS : 0
  }

  /** Resolves when fewer jobs run than allowed. */
  private slot(): Promise<void> {
    if (this.running.size < this.options.settings.maxConcurrent) return Promise.resolve()
    return new Promise((resolve) => this.slotWaiters.push(resolve))
  }

  private fresh(jobId: string): boolean {
    if ([...this.running.values()].some((running) => running.job.job_id === jobId)) return false
    const until = this.declinedUntil.get(jobId)
    if (until === undefined) return true
    if (until > Date.now()) return false
    this.declinedUntil.delete(jobId)
    return true
  }

  private decline(job: Job, reason: string, untilMs: number): void {
    const first = !this.declinedUntil.has(job.job_id)
    this.declinedUntil.set(job.job_id, untilMs)
    if (first) this.options.log.info({job_id: job.job_id, kind: job.kind, reason}, 'job declined')
    // Forgotten with the job: a declined id is never seen again once its deadline has passed.
    for (const [id, until] of this.declinedUntil) if (until < Date.now() - 60_000) this.declinedUntil.delete(id)
  }

  /**
   * Leases the job and starts it when this host should: a kind served here, a fixed reward at the kind's floor or
   * above, resources that fit what is free, and a deadline the executor's estimate can meet. Public: a won auction
   * (§13) is leased and run the same way, with `won` (its fee was settled by the auction, not by the price floor).
   */
  async take(job: Job, options: {won?: boolean} = {}): Promise<boolean> {
    const program = await this.consider(job, options.won ?? false)
    if (!program) return false
    let lease: Lease
    try {
      lease = await this.options.api.lease(job.job_id, {signal: follow(this.options.stopping), retry: QUICK_RETRY})
    } catch (error) {
      this.options.onApiError(error)
      if (error instanceof ApiError && error.refused) {
        this.decline(job, `the lease was refused: ${error.apiCode}`, Date.now() + (error.apiCode === 'leased' ? DECLINE_MS.leased : DECLINE_MS.refused))
        return false
      }
      // Unanswered: a lease granted meanwhile shows up in leases?status=active at the next restart, or expires.
      this.options.log.warn({job_id: job.job_id, err: describeError(error)}, 'could not lease the job: will see it again')
      return false
    }
    this.options.journal.append({event: 'lease_taken', lease_id: lease.lease_id, lease, job})
    this.options.metrics.jobsLeased.inc({kind: job.kind})
    this.options.metrics.jobReactionLatency.observe(Math.max(0, lease.leased_at - job.created_at) / 1000)
    this.options.log.info({job_id: job.job_id, lease_id: lease.lease_id, kind: job.kind, deadline: job.deadline, lease_seconds: job.lease_seconds}, 'job leased')
    this.track(lease, job, (signal) => this.runLeased(lease, job, signal, false, program))
    return true
  }

  /**
   * Runs a lease taken outside this loop (a won §13 auction: the auction engine leased it) as one this loop took:
   * journalled, renewed, run, signed, submitted. A lease this loop runs already (taken up after a restart) is not
   * started twice. Resolves when the lease is settled or handed back.
   */
  async runWon(lease: Lease, job: Job): Promise<void> {
    await (this.takingUp ??= this.takeUp())
    const running = this.running.get(lease.lease_id)
    if (running) return running.work
    // Settled before a restart: the take-up found its end.
    if (this.options.journalLeases.has(lease.lease_id)) return
    this.options.journal.append({event: 'lease_taken', lease_id: lease.lease_id, lease, job})
    this.options.metrics.jobsLeased.inc({kind: job.kind})
    this.options.log.info({job_id: job.job_id, lease_id: lease.lease_id, kind: job.kind, deadline: job.deadline}, 'won job leased')
    this.track(lease, job, (signal) => this.runLeased(lease, job, signal, false))
    await this.running.get(lease.lease_id)?.work
  }

  /** The program when the job is one to lease; undefined (and the job declined for a while) when it is not. */
  private async consider(job: Job, won: boolean): Promise<Buffer | undefined> {
    const {settings} = this.options
    const untilDeadline = job.deadline
    const executor = this.options.executors.get(job.kind)
    if (!executor || !settings.kinds.includes(job.kind)) return this.declined(job, `${job.kind} jobs are not served here`, untilDeadline)
    if (!won && (job.reward.mode !== 'fixed' || job.reward.amount === undefined)) return this.declined(job, 'an auction: leased only when won (§13)', untilDeadline)
    if (job.requires_attestation && !this.options.attest) return this.declined(job, 'it requires attestation, which this host does not give', untilDeadline)
    const floor = settings.minReward[job.kind]
    if (!won && floor !== undefined && job.reward.amount !== undefined && parseAmount(job.reward.amount) < parseAmount(floor)) {
      return this.declined(job, `its reward ${job.reward.amount} is under the floor of ${floor} for ${job.kind}`, untilDeadline)
    }
    const free = this.options.free()
    if (free && !fits(job, free)) return this.declined(job, 'its resources do not fit what is free now', Date.now() + DECLINE_MS.busy)
    let program: Buffer
    try {
      program = await this.program(job)
    } catch (error) {
      if (error instanceof DigestMismatchError) return this.declined(job, error.message, untilDeadline)
      this.options.onApiError(error)
      return this.declined(job, `its program could not be fetched: ${describeError(error)}`, Date.now() + DECLINE_MS.busy)
    }
    const late = await this.lateBy(executor, job, program)
    if (late !== undefined) return this.declined(job, late, untilDeadline)
    return program
  }

  private declined(job: Job, reason: string, untilMs: number): undefined {
    this.decline(job, reason, untilMs)
    return undefined
  }

  private program(job: Job): Promise<Buffer> {
    return this.programs.get(job.program.digest, () => this.options.api.program(job.program.digest, {signal: follow(this.options.stopping), retry: QUICK_RETRY}))
  }

  /** Why the job can't finish before its deadline from now, by the executor's estimate; undefined when it can (or nothing is known). */
  private async lateBy(executor: Executor, job: Job, program: Buffer, input?: Buffer): Promise<string | undefined> {
    let estimate
    try {
      estimate = await executor.estimate({job: executorJob(job), program, ...(input ? {input} : {})})
    } catch (error) {
      // A program the estimate can't read fails in run() with the executor's own reason.
      this.options.log.debug({job_id: job.job_id, err: describeError(error)}, 'no estimate')
      return undefined
    }
    if (!estimate) return undefined
    const needMs = estimate.seconds * 1000 * ESTIMATE_SAFETY + SUBMIT_MARGIN_MS
    const leftMs = job.deadline - Date.now()
    if (needMs <= leftMs) return undefined
    return `it can't finish before its deadline: ${Math.ceil(needMs / 1000)} s needed (${estimate.basis}), ${Math.max(0, Math.floor(leftMs / 1000))} s left`
  }

  // ---- one lease ----

  /** Runs `work` for the lease, counted as running until it settles. */
  private track(lease: Lease, job: Job, work: (signal: AbortSignal) => Promise<void>): void {
    const signal = follow(this.options.interrupting)
    const running: Running = {lease, job, work: Promise.resolve()}
    running.work = work(signal)
      .catch((error: unknown) => this.options.log.error({lease_id: lease.lease_id, job_id: job.job_id, err: describeError(error)}, 'unexpected error while handling the lease'))
      .finally(() => {
        this.running.delete(lease.lease_id)
        this.options.metrics.activeLeases.set(this.running.size)
        const waiters = this.slotWaiters
        this.slotWaiters = []
        for (const resolve of waiters) resolve()
      })
    this.running.set(lease.lease_id, running)
    this.options.metrics.activeLeases.set(this.running.size)
  }

  /**
   * Fetches what the run needs, runs it with the lease renewed, and submits the signed result. A run that can't
   * finish before the deadline is failed early (retryable) so another provider can take the job.
   */
  private async runLeased(lease: Lease, job: Job, interrupt: AbortSignal, resumed: boolean, fetchedProgram?: Buffer): Promise<void> {
    const {log} = this.options
    const executor = this.options.executors.get(job.kind)
    if (!executor) return this.failLease(lease, job.job_id, {reason: `${job.kind} jobs are not served here any more`, retryable: true})
    // A lease taken up after a restart is renewed at once: the previous run's last renewal may be long ago.
    const renewal = this.keepRenewed(lease, job, resumed)
    const deadlineTimer = new AbortController()
    // Clamped: setTimeout fires at once for a delay over 2^31 - 1 ms (a deadline weeks away).
    const timer = setTimeout(() => deadlineTimer.abort(new Error('deadline')), Math.min(2 ** 31 - 1, Math.max(0, job.deadline - SUBMIT_MARGIN_MS - Date.now())))
    const signal = AbortSignal.any([interrupt, renewal.lost, deadlineTimer.signal])
    const workDir = join(this.runsDir, lease.lease_id)
    let gpus: readonly GpuUnit[] | undefined
    try {
      let program: Buffer
      let input: Buffer
      try {
        program = fetchedProgram ?? (await this.program(job))
        input = checkDigest(await this.options.api.input(job.job_id, {signal, retry: QUICK_RETRY}), job.input.digest, 'input')
      } catch (error) {
        if (signal.aborted) return await this.stopped(lease, job, renewal.lost, deadlineTimer.signal)
        this.options.onApiError(error)
        const reason = error instanceof DigestMismatchError ? error.message : `could not fetch the program or input: ${describeError(error)}`
        return await this.failLease(lease, job.job_id, {reason, retryable: true})
      }
      const late = await this.lateBy(executor, job, program, input)
      if (late !== undefined) {
        log.warn({lease_id: lease.lease_id, job_id: job.job_id, resumed, reason: late}, 'failing the lease early: another provider may still make the deadline')
        return await this.giveUpOnDeadline(lease, job, late)
      }
      gpus = this.allocateGpus(job)
      rmSync(workDir, {recursive: true, force: true})
      mkdirSync(workDir, {recursive: true, mode: 0o700})
      const startedAt = Date.now()
      log.info({lease_id: lease.lease_id, job_id: job.job_id, kind: job.kind, executor: executor.type, resumed}, 'running the job')
      let output: Buffer
      try {
        const outcome = await executor.run({job: executorJob(job), program, input, workDir, signal, ...(gpus ? {gpus} : {})})
        output = outcome.output
        this.options.metrics.jobExecutorSeconds.observe({kind: job.kind}, outcome.executorMs / 1000)
        log.info({lease_id: lease.lease_id, job_id: job.job_id, executor_ms: Math.round(outcome.executorMs), output_bytes: output.length}, 'the job ran')
      } catch (error) {
        if (signal.aborted) return await this.stopped(lease, job, renewal.lost, deadlineTimer.signal)
        const failure = error instanceof ExecutorError ? error : undefined
        log.warn({lease_id: lease.lease_id, job_id: job.job_id, err: describeError(error), detail: failure?.detail}, 'the job failed to run')
        return await this.failLease(lease, job.job_id, {reason: `${failure?.code ?? 'executor_failed'}: ${failure?.message ?? describeError(error)}`.slice(0, 1000), retryable: failure?.retryable ?? true})
      }
      let envelope: SignedResultEnvelope
      try {
        envelope = await buildResultEnvelope(this.options.key, {
          jobId: job.job_id,
          leaseId: lease.lease_id,
          programDigest: job.program.digest,
          inputDigest: job.input.digest,
          output,
          startedAt,
          finishedAt: Date.now(),
        }, this.options.attest)
      } catch (error) {
        // Only the attester can fail here (the TPM stopped answering, or holds another AK): an unattested result
        // would be rejected and its collateral lost, so the lease goes back while another provider has time.
        log.error({lease_id: lease.lease_id, job_id: job.job_id, err: describeError(error)}, 'the result could not be attested')
        return await this.failLease(lease, job.job_id, {reason: 'attestation_failed: the TPM could not quote this result', retryable: true})
      }
      const outputFile = envelope.output.data_b64 === undefined ? this.keepOutput(lease, output) : undefined
      // Before it is submitted: a restart resubmits this very envelope, never one built again from another run.
      this.options.journal.append({event: 'result_signed', lease_id: lease.lease_id, envelope, ...(outputFile ? {output_file: outputFile} : {})})
      this.keepForDisputes(envelope)
      if (this.options.disk.full) await this.options.disk.room(interrupt)
      if (interrupt.aborted) return
      await this.submit(lease, job, envelope, outputFile, interrupt, renewal)
    } finally {
      clearTimeout(timer)
      renewal.stop()
      rmSync(workDir, {recursive: true, force: true})
      if (gpus) this.options.gpus()?.release(jobHolder(job.job_id))
    }
  }

  /** The run stopped: the agent is shutting down (the lease waits for the next run), the lease was lost, or the deadline came. */
  private async stopped(lease: Lease, job: Job, lost: AbortSignal, deadline: AbortSignal): Promise<void> {
    if (lost.aborted) return this.record(lease, job, {outcome: 'expired', reason: 'the lease expired before the result was in'})
    if (deadline.aborted) return this.giveUpOnDeadline(lease, job, 'the run did not finish before the deadline')
    this.options.log.info({lease_id: lease.lease_id, job_id: job.job_id}, 'interrupted: the lease is taken up by the next run')
  }

  private allocateGpus(job: Job): readonly GpuUnit[] | undefined {
    const count = job.resources.gpu_count ?? 0
    const allocator = this.options.gpus()
    if (count === 0 || !allocator) return undefined
    return allocator.allocate(jobHolder(job.job_id), {count, ...(job.resources.gpu_model ? {model: job.resources.gpu_model} : {})})
  }

  /** The envelope kept by job for `dispute evidence --auto --job`; evidence is no reason to hold a result back. */
  private keepForDisputes(envelope: SignedResultEnvelope): void {
    try {
      archiveResultEnvelope(this.options.stateDir, envelope)
    } catch (error) {
      this.options.log.warn({job_id: envelope.job_id, err: describeError(error)}, 'the result envelope could not be kept for dispute evidence')
    }
  }

  /** An output too large to go inline, kept until it is uploaded (a restart uploads it again). */
  private keepOutput(lease: Lease, output: Buffer): string {
    const path = join(this.options.stateDir, 'job-outputs', lease.lease_id)
    writeFileAtomic(path, output, 0o600)
    return path
  }

  /** Sends the signed result through the outbox and records the verdict. */
  private async submit(lease: Lease, job: Job, envelope: SignedResultEnvelope, outputFile: string | undefined, interrupt: AbortSignal, renewal?: Renewal): Promise<void> {
    const keeping = renewal ?? this.keepRenewed(lease, job, true)
    try {
      if (envelope.output.data_b64 === undefined) {
        if (!outputFile || !existsSync(outputFile)) return await this.failLease(lease, job.job_id, {reason: 'the output of the signed result is lost', retryable: true})
        const uploaded = await this.upload(lease, readFileSync(outputFile), interrupt)
        if (!uploaded) return
      }
      const waiting = this.options.reporter.settlementOf((report) => report.kind === 'result' && report.lease_id === lease.lease_id)
      const settlement = await unlessAborted(waiting ?? this.options.reporter.send({kind: 'result', lease_id: lease.lease_id, job_id: job.job_id, envelope}), interrupt)
      await this.settle(lease, job, settlement)
    } finally {
      if (!renewal) keeping.stop()
    }
  }

  /** Uploads a large output, again until it is in; false when interrupted or refused (the lease is then recorded). */
  private async upload(lease: Lease, output: Buffer, interrupt: AbortSignal): Promise<boolean> {
    const backoff = new Backoff()
    while (!interrupt.aborted) {
      try {
        await this.options.api.uploadOutput(lease.lease_id, output, {signal: follow(interrupt), retry: QUICK_RETRY})
        return true
      } catch (error) {
        this.options.onApiError(error)
        // Already in: the result was submitted before a restart.
        if (isCode(error, 'already_exists')) return true
        if (error instanceof ApiError && error.refused) {
          this.record(lease, lease.job ?? undefined, {outcome: error.status === 410 ? 'expired' : 'refused', reason: describeError(error)})
          return false
        }
        await pause(backoff.next(), interrupt)
      }
    }
    return false
  }

  /** Records the verdict of a settled result report; an answer that was not read is looked up in the lease's state. */
  private async settle(lease: Lease, job: Job, settlement: Settlement | undefined): Promise<void> {
    if (settlement === undefined) {
      this.options.log.info({lease_id: lease.lease_id, job_id: job.job_id}, 'interrupted: the result waits in the outbox for the next run')
      return
    }
    if (settlement.delivered && settlement.verdict) return this.record(lease, job, verdictOutcome(settlement.verdict))
    const state = (await this.readLeases())?.find((candidate) => candidate.lease_id === lease.lease_id)
    const outcome = state && outcomeOfLease(state)
    if (outcome) return this.record(lease, job, outcome)
    if (settlement.delivered) {
      // Delivered by the state's word, and the state no longer shows it: nothing to record; the next run reads it again.
      this.options.log.warn({lease_id: lease.lease_id, job_id: job.job_id, status: state?.status}, 'the result was delivered and its verdict could not be read yet')
      return
    }
    this.record(lease, job, {outcome: 'refused', reason: settlement.reason})
  }

  /**
   * For the reporter, after a result's answer could not be read or was refused: whether the lease's state shows a
   * verdict. A lease still being verified is `unknown`: posting the same envelope again waits for its verdict.
   */
  async confirm(report: Extract<Report, {kind: 'result'}>): Promise<Confirmation> {
    try {
      const leases = await this.options.api.leases(undefined, {signal: follow(this.options.interrupting), retry: QUICK_RETRY})
      const lease = leases.find((candidate) => candidate.lease_id === report.lease_id)
      if (!lease) return 'not_in_effect'
      if (lease.status === 'accepted' || lease.status === 'rejected') return 'took_effect'
      return lease.status === 'submitted' ? 'unknown' : 'not_in_effect'
    } catch (error) {
      this.options.onApiError(error)
      return 'unknown'
    }
  }

  /** A job this host can't finish in time goes back for another provider, and is not leased here again. */
  private async giveUpOnDeadline(lease: Lease, job: Job, reason: string): Promise<void> {
    this.declinedUntil.set(job.job_id, job.deadline)
    return this.failLease(lease, job.job_id, {reason, retryable: true})
  }

  /** POST fail, asked again until it is answered; the lease is recorded failed (or expired, when it already was). */
  private async failLease(lease: Lease, jobId: string, failure: {reason: string; retryable: boolean}): Promise<void> {
    const backoff = new Backoff()
    const signal = this.options.interrupting
    while (!signal.aborted && Date.now() < lease.deadline + 60_000) {
      try {
        await this.options.api.fail(lease.lease_id, failure, {signal: follow(signal), retry: QUICK_RETRY})
        this.record(lease, lease.job, {outcome: 'failed', reason: failure.reason}, jobId)
        this.options.log.warn({lease_id: lease.lease_id, job_id: jobId, reason: failure.reason, retryable: failure.retryable}, 'lease failed')
        return
      } catch (error) {
        this.options.onApiError(error)
        if (error instanceof ApiError && error.refused) {
          const state = (await this.readLeases())?.find((candidate) => candidate.lease_id === lease.lease_id)
          this.record(lease, lease.job, (state && outcomeOfLease(state)) ?? {outcome: 'refused', reason: describeError(error)}, jobId)
          return
        }
        await pause(backoff.next(), signal)
      }
    }
  }

  /** A lease's end: journalled (so a restart leaves it alone), counted and logged. */
  private record(lease: Lease, job: Job | undefined, outcome: LeaseOutcome, jobId = job?.job_id ?? lease.job_id): void {
    const reason = 'reason' in outcome ? outcome.reason : undefined
    const reward = outcome.outcome === 'accepted' ? outcome.reward : undefined
    this.options.journal.append({event: 'lease_done', lease_id: lease.lease_id, job_id: jobId, outcome: outcome.outcome, ...(reason ? {reason: reason.slice(0, 1000)} : {}), ...(reward ? {reward} : {})})
    const kind = job?.kind ?? lease.job?.kind ?? 'unknown'
    const {metrics, log} = this.options
    if (outcome.outcome === 'accepted' || outcome.outcome === 'rejected') {
      metrics.jobResults.inc({kind, verdict: outcome.outcome, reason: outcome.outcome === 'rejected' ? outcome.reason : ''})
      metrics.jobTimeToResult.observe({kind}, Math.max(0, Date.now() - lease.leased_at) / 1000)
    }
    if (outcome.outcome === 'expired') metrics.jobsExpired.inc({kind})
    if (outcome.outcome === 'failed') metrics.jobsFailed.inc({kind})
    if (reward) metrics.jobRewards.inc(Number(parseAmount(reward)) / 1e6)
    if (outcome.outcome !== 'failed') {
      const fields = {lease_id: lease.lease_id, job_id: jobId, kind, outcome: outcome.outcome, ...(reason ? {reason} : {}), ...(reward ? {reward} : {})}
      if (outcome.outcome === 'accepted') log.info(fields, 'result accepted')
      else log.warn(fields, outcome.outcome === 'rejected' ? 'result rejected' : `lease ${outcome.outcome}`)
    }
  }

  /**
   * Renews the lease every third of `lease_seconds` until stopped. `lost` fires when the marketplace says it expired
   * (410): the run stops, since its result would be refused.
   */
  private keepRenewed(lease: Lease, job: Job, atOnce: boolean): Renewal {
    const lost = new AbortController()
    const stop = new AbortController()
    const everyMs = Math.min(MAX_RENEW_MS, Math.max(1000, (job.lease_seconds * 1000) / 3))
    const signal = AbortSignal.any([stop.signal, this.options.interrupting])
    const loop = async () => {
      let first = atOnce
      while (!signal.aborted) {
        if (!first) await pause(everyMs, signal)
        first = false
        if (signal.aborted) return
        try {
          await this.options.api.renew(lease.lease_id, {signal: follow(signal), retry: QUICK_RETRY})
        } catch (error) {
          if (signal.aborted) return
          this.options.onApiError(error)
          if (error instanceof ApiError && error.status === 410) {
            lost.abort(error)
            return
          }
          // Submitted (the result is in): nothing left to renew.
          if (error instanceof ApiError && error.refused) return
          this.options.log.warn({lease_id: lease.lease_id, err: describeError(error)}, 'could not renew the lease: trying again at the next renewal')
        }
      }
    }
    void loop()
    return {lost: lost.signal, stop: () => stop.abort()}
  }
}

interface Renewal {
  lost: AbortSignal
  stop: () => void
}

function verdictOutcome(verdict: Verdict): LeaseOutcome {
  return verdict.verdict === 'accepted' ? {outcome: 'accepted', ...(verdict.reward ? {reward: verdict.reward} : {})} : {outcome: 'rejected', reason: verdict.reason ?? 'rejected'}
}

function fits(job: Job, free: JobCapacity): boolean {
  return job.resources.cpu_cores <= free.cpu_cores && job.resources.memory_mb <= free.memory_mb && (job.resources.gpu_count ?? 0) <= free.gpu_count
}
