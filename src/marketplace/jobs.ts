import {z} from 'zod'

import {formatAmount, parseAmount} from '../core/decimal.js'
import {canonicalJson, randomHex, sha256Hex, verifyResultEnvelope, type SignedResultEnvelope} from '../core/signing.js'
import {attestationRequired, type AttestationBook} from './attestation.js'
import {auctionPhase, type AuctionBook} from './auctions.js'
import {OPEN_JOBS_TOPIC, fromJsonColumn, type MarketplaceContext} from './context.js'
import {HttpError, invalidBody, invalidTransition, notFound} from './http-error.js'
import {
  checkInput,
  parseProgram,
  parseQuantumInput,
  parseZkOutput,
  qasmShape,
  quantumCounts,
  quantumTrapPasses,
  ZkProgram,
  type ParsedProgram,
  type TrapAnswer,
} from './job-kinds.js'
import type {FailBody, JobBody, JobKind, LeaseStatus, ResultEnvelopeBody} from './job-schemas.js'
import type {StakeBook} from './stake.js'
import {tierLoadCounter} from './tier-load.js'
import {TrapMaker} from './traps.js'
import {ZkWorker} from './zk-worker.js'

/** §12: outputs up to this size travel inside the envelope (`data_b64`); larger ones are uploaded first. */
export const MAX_INLINE_OUTPUT_BYTES = 512 * 1024
/** §12: programs and uploaded outputs are at most 16 MiB. */
export const MAX_BLOB_BYTES = 16 * 1024 * 1024
/** Auction phases when the renter doesn't say (§13 makes bid_seconds and reveal_seconds optional). */
export const DEFAULT_AUCTION_PHASE_SECONDS = 30

// setTimeout takes at most a signed 32-bit delay; a later event is re-armed when this one fires.
const MAX_TIMER_MS = 2 ** 31 - 1
const DAY_MS = 86_400_000

type JobStatus = 'open' | 'leased' | 'completed' | 'failed' | 'cancelled'
/** A job's terms: what POST /jobs names besides the program and the input. */
type JobTerms = Omit<JobBody, 'program_digest' | 'input_b64'>

interface JobRow {
  job_id: string
  requester_pubkey: string
  kind: JobKind
  program_digest: string
  program_size: number
  input_digest: string
  input_size: number
  cpu_cores: number
  memory_mb: number
  gpu_count: number
  gpu_model: string | null
  reward_mode: 'fixed' | 'auction'
  reward_micro: string | null
  max_fee_micro: string | null
  collateral_micro: string
  created_at: number
  deadline: number
  lease_seconds: number
  max_attempts: number
  attempts_used: number
  requires_attestation: number
  expect_public_signals: string | null
  bid_closes_at: number | null
  reveal_closes_at: number | null
  auction_closed: number
  winner_pubkey: string | null
  clearing_fee_micro: string | null
  status: JobStatus
  status_reason: string | null
  updated_at: number
  trap_answer: string | null
  result_lease_id: string | null
}

// Every column but the input bytes, with the program's and input's sizes.
const JOB_SELECT = `SELECT j.job_id, j.requester_pubkey, j.kind, j.program_digest, p.size_bytes AS program_size, j.input_digest,
  length(j.input) AS input_size, j.cpu_cores, j.memory_mb, j.gpu_count, j.gpu_model, j.reward_mode, j.reward_micro, j.max_fee_micro,
  j.collateral_micro, j.created_at, j.deadline, j.lease_seconds, j.max_attempts, j.attempts_used, j.requires_attestation,
  j.expect_public_signals, j.bid_closes_at, j.reveal_closes_at, j.auction_closed, j.winner_pubkey, j.clearing_fee_micro, j.status,
  j.status_reason, j.updated_at, j.trap_answer, j.result_lease_id
  FROM jobs j JOIN programs p ON p.digest = j.program_digest`

interface LeaseRow {
  seq: number
  lease_id: string
  job_id: string
  provider_pubkey: string
  agent_pubkey: string
  status: LeaseStatus
  leased_at: number
  expires_at: number
  deadline: number
  collateral_micro: string
  forfeited_micro: string | null
  envelope: string | null
  submitted_at: number | null
  reason: string | null
  reason_detail: string | null
  reward_micro: string | null
  retryable: number | null
  ended_at: number | null
  trap: number
}

/** §12: a job as an agent sees it. Nothing in it tells a trap from a renter's job. */
export interface JobView {
  job_id: string
  kind: JobKind
  program: {digest: string; size_bytes: number}
  input: {digest: string; size_bytes: number}
  resources: {cpu_cores: number; memory_mb: number; gpu_count: number; gpu_model?: string}
  reward: {mode: 'fixed'; amount: string} | {mode: 'auction'; max_fee: string; amount?: string}
  collateral: string
  deadline: number
  lease_seconds: number
  attempts_left: number
  requires_attestation: boolean
  bid_closes_at?: number
  reveal_closes_at?: number
  created_at: number
  status: JobStatus
}

export type Verdict = {verdict: 'accepted'; reward: string} | {verdict: 'rejected'; reason: string; detail?: string}

/** GET /jobs/{id}: the job with its latest settled result and verdict (the requester also sees its own key and terms). */
export interface JobDetailView extends JobView {
  requester_pubkey?: string
  max_attempts: number
  expect_public_signals?: string[]
  status_reason: string | null
  updated_at: number
  winner?: string
  result: SignedResultEnvelope | null
  verdict: Verdict | null
}

export interface LeaseView {
  lease_id: string
  job_id: string
  agent_pubkey: string
  status: LeaseStatus
  leased_at: number
  expires_at: number
  deadline: number
  collateral: string
  /** The job, so a restarted agent can take its leases up again from this list alone. */
  job: JobView
  reason?: string
  reward?: string
  forfeited?: string
}

export interface SlaView {
  days: number
  leases: number
  accepted: number
  rejected: number
  expired: number
  failed: number
  on_time_percent: number | null
  latency_ms: {p50: number | null; p95: number | null}
  traps: {passed: number; failed: number}
}

/** The capacity a heartbeat reports (§5), read leniently: an agent may send more fields. */
const Capacity = z.looseObject({
  cpu_cores: z.number().nonnegative(),
  memory_mb: z.number().nonnegative(),
  gpu_count: z.number().nonnegative().optional(),
  gpu_models: z.array(z.string()).optional(),
})
type Capacity = z.infer<typeof Capacity>

interface ProviderFacts {
  pubkey: string
  paused: boolean
  draining: boolean
  capabilities: Set<string>
  capacity: Capacity | undefined
  /** Active and submitted leases plus the contracts it holds, against the tier's limit (§8). */
  busy: number
  maxConcurrent: number | null
  /** Jobs this provider failed with `retryable: false`: it said it can't run them. */
  refused: Set<string>
}

interface ProviderRow {
  status: 'active' | 'paused'
  heartbeat_status: string | null
  capabilities: string | null
  capacity: string | null
}

function jobView(row: JobRow): JobView {
  const reward: JobView['reward'] =
    row.reward_mode === 'fixed'
      ? {mode: 'fixed', amount: formatAmount(BigInt(row.reward_micro ?? '0'))}
      : {
          mode: 'auction',
          max_fee: formatAmount(BigInt(row.max_fee_micro ?? '0')),
          ...(row.clearing_fee_micro ? {amount: formatAmount(BigInt(row.clearing_fee_micro))} : {}),
        }
  return {
    job_id: row.job_id,
    kind: row.kind,
    program: {digest: row.program_digest, size_bytes: row.program_size},
    input: {digest: row.input_digest, size_bytes: row.input_size},
    resources: {cpu_cores: row.cpu_cores, memory_mb: row.memory_mb, gpu_count: row.gpu_count, ...(row.gpu_model ? {gpu_model: row.gpu_model} : {})},
    reward,
    collateral: formatAmount(BigInt(row.collateral_micro)),
    deadline: row.deadline,
    lease_seconds: row.lease_seconds,
    attempts_left: Math.max(0, row.max_attempts - row.attempts_used),
    requires_attestation: row.requires_attestation === 1,
    ...(row.bid_closes_at === null ? {} : {bid_closes_at: row.bid_closes_at}),
    ...(row.reveal_closes_at === null ? {} : {reveal_closes_at: row.reveal_closes_at}),
    created_at: row.created_at,
    status: row.status,
  }
}

function verdictOf(lease: LeaseRow): Verdict | null {
  if (lease.status === 'accepted') return {verdict: 'accepted', reward: formatAmount(BigInt(lease.reward_micro ?? '0'))}
  if (lease.status === 'rejected') return {verdict: 'rejected', reason: lease.reason ?? 'rejected', ...(lease.reason_detail ? {detail: lease.reason_detail} : {})}
  return null
}

function fits(job: JobRow, capacity: Capacity): boolean {
  if (job.cpu_cores > capacity.cpu_cores || job.memory_mb > capacity.memory_mb || job.gpu_count > (capacity.gpu_count ?? 0)) return false
  if (!job.gpu_model) return true
  const wanted = job.gpu_model.toLowerCase()
  return (capacity.gpu_models ?? []).some((model) => model.toLowerCase() === wanted)
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], fraction: number): number | null {
  if (sorted.length === 0) return null
  return sorted[Math.max(0, Math.ceil(fraction * sorted.length) - 1)] ?? null
}

/**
 * §12 the job market: programs by digest, jobs, leases and their collateral, results and their verification, the
 * SLA summary; with the auction book (§13) and the attestation book (§14). State changes that depend on time (leases
 * expiring, open jobs passing their deadline, auctions closing) run on a timer set for the next one, and again before
 * every read or write of the book, so a moved test clock moves them too. A result's verification is asynchronous
 * (Groth16 runs in a worker thread): the lease is `submitted` meanwhile and cannot expire, and a restarted server
 * takes up the submitted leases it finds.
 */
export class JobBook {
  private readonly statements
  private readonly tierLoad: (providerPubkey: string) => number
  private readonly zk = new ZkWorker()
  private readonly traps: TrapMaker
  private readonly verifications = new Map<string, Promise<Verdict>>()
  /** A lower bound on the next time-driven change; undefined until read from the database. */
  private nextEvent: number | undefined
  private timer: NodeJS.Timeout | undefined
  private readonly trapRequester = randomHex(32)

  constructor(
    private readonly context: MarketplaceContext,
    private readonly stake: StakeBook,
    private readonly auctions: AuctionBook,
    private readonly attestation: AttestationBook,
  ) {
    this.traps = new TrapMaker(context.settings.trapRatio, this.zk)
    const {db} = context
    this.tierLoad = tierLoadCounter(db)
    this.statements = {
      program: db.prepare<[string], {digest: string; size_bytes: number; bytes: Buffer}>('SELECT digest, size_bytes, bytes FROM programs WHERE digest = ?'),
      insertProgram: db.prepare('INSERT OR IGNORE INTO programs (digest, size_bytes, bytes, uploaded_by, created_at) VALUES (?, ?, ?, ?, ?)'),
      job: db.prepare<[string], JobRow>(`${JOB_SELECT} WHERE j.job_id = ?`),
      jobInput: db.prepare<[string], Buffer>('SELECT input FROM jobs WHERE job_id = ?').pluck(),
      openJobs: db.prepare<[number], JobRow>(`${JOB_SELECT} WHERE j.status = 'open' AND j.deadline > ? ORDER BY j.created_at, j.job_id`),
      insertJob: db.prepare(
        `INSERT INTO jobs (job_id, requester_pubkey, kind, program_digest, input, input_digest, cpu_cores, memory_mb, gpu_count, gpu_model,
           reward_mode, reward_micro, max_fee_micro, collateral_micro, created_at, deadline, lease_seconds, max_attempts, requires_attestation,
           expect_public_signals, bid_closes_at, reveal_closes_at, status, updated_at, trap_answer)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)`,
      ),
      setJobStatus: db.prepare('UPDATE jobs SET status = ?, status_reason = ?, updated_at = ? WHERE job_id = ?'),
      leaseJob: db.prepare("UPDATE jobs SET status = 'leased', attempts_used = attempts_used + 1, updated_at = ? WHERE job_id = ?"),
      setResultLease: db.prepare('UPDATE jobs SET result_lease_id = ?, updated_at = ? WHERE job_id = ?'),
      closeAuction: db.prepare('UPDATE jobs SET auction_closed = 1, winner_pubkey = ?, clearing_fee_micro = ?, updated_at = ? WHERE job_id = ?'),
      dueAuctions: db.prepare<[number], JobRow>(
        `${JOB_SELECT} WHERE j.status = 'open' AND j.reward_mode = 'auction' AND j.auction_closed = 0 AND j.reveal_closes_at <= ?`,
      ),
      overdueJobs: db.prepare<[number], {job_id: string}>("SELECT job_id FROM jobs WHERE status = 'open' AND deadline <= ?"),
      nextEvent: db
        .prepare<[], number | null>(
          `SELECT min(t) FROM (SELECT min(expires_at) AS t FROM leases WHERE status = 'active'
             UNION ALL SELECT min(deadline) FROM jobs WHERE status = 'open'
             UNION ALL SELECT min(reveal_closes_at) FROM jobs WHERE status = 'open' AND reward_mode = 'auction' AND auction_closed = 0)`,
        )
        .pluck(),
      lease: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE lease_id = ?'),
      leasesOf: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE provider_pubkey = ? ORDER BY seq'),
      leasesWithStatus: db.prepare<[string, string], LeaseRow>('SELECT * FROM leases WHERE provider_pubkey = ? AND status = ? ORDER BY seq'),
      latestLeaseOf: db.prepare<[string, string], LeaseRow>('SELECT * FROM leases WHERE job_id = ? AND provider_pubkey = ? ORDER BY seq DESC LIMIT 1'),
      dueLeases: db.prepare<[number], LeaseRow>("SELECT * FROM leases WHERE status = 'active' AND expires_at <= ? ORDER BY expires_at, seq"),
      submittedLeases: db.prepare<[], {lease_id: string}>("SELECT lease_id FROM leases WHERE status = 'submitted'"),
      insertLease: db.prepare(
        `INSERT INTO leases (lease_id, job_id, provider_pubkey, agent_pubkey, status, leased_at, expires_at, deadline, collateral_micro, trap)
         VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)`,
      ),
      renew: db.prepare('UPDATE leases SET expires_at = ? WHERE lease_id = ?'),
      submit: db.prepare("UPDATE leases SET status = 'submitted', envelope = ?, submitted_at = ? WHERE lease_id = ?"),
      endLease: db.prepare(
        'UPDATE leases SET status = ?, ended_at = ?, forfeited_micro = ?, reason = ?, reason_detail = ?, reward_micro = ?, retryable = ? WHERE lease_id = ?',
      ),
      output: db.prepare<[string, string], {size_bytes: number; bytes: Buffer}>('SELECT size_bytes, bytes FROM lease_outputs WHERE lease_id = ? AND digest = ?'),
      insertOutput: db.prepare('INSERT OR IGNORE INTO lease_outputs (lease_id, digest, size_bytes, bytes, uploaded_at) VALUES (?, ?, ?, ?, ?)'),
      provider: db.prepare<[string], ProviderRow>('SELECT status, heartbeat_status, capabilities, capacity FROM providers WHERE pubkey = ?'),
      refusedJobs: db.prepare<[string], string>("SELECT DISTINCT job_id FROM leases WHERE provider_pubkey = ? AND status = 'failed' AND retryable = 0").pluck(),
      hasLeased: db.prepare<[string, string], number>('SELECT 1 FROM leases WHERE job_id = ? AND provider_pubkey = ? LIMIT 1').pluck(),
      slaCounts: db.prepare<[string, number], {status: LeaseStatus; n: number}>(
        'SELECT status, count(*) AS n FROM leases WHERE provider_pubkey = ? AND leased_at >= ? GROUP BY status',
      ),
      slaLatencies: db
        .prepare<[string, number], number>(
          "SELECT submitted_at - leased_at FROM leases WHERE provider_pubkey = ? AND status = 'accepted' AND leased_at >= ? ORDER BY 1",
        )
        .pluck(),
      slaTraps: db.prepare<[string, number], {passed: number | null; failed: number | null}>(
        `SELECT sum(status = 'accepted') AS passed, sum(status = 'rejected') AS failed FROM leases
         WHERE provider_pubkey = ? AND trap = 1 AND leased_at >= ?`,
      ),
    }
    context.lifetime.addEventListener(
      'abort',
      () => {
        clearTimeout(this.timer)
        void this.zk.close()
      },
      {once: true},
    )
    this.expireDue()
    // Results a stopped server was verifying: verify them again (their envelopes and outputs are stored).
    for (const {lease_id: leaseId} of this.statements.submittedLeases.all()) {
      this.verification(leaseId).catch((error: unknown) => this.context.logError(error))
    }
  }

  private now(): number {
    return this.context.clock.now()
  }

  // §12 programs

  /** POST /programs: stores bytes by digest; the same bytes again change nothing. */
  putProgram(uploader: string, bytes: Buffer): {digest: string; size_bytes: number} {
    if (bytes.length === 0) throw invalidBody([{field: 'body', message: 'expected the program bytes (application/octet-stream)'}])
    const digest = sha256Hex(bytes)
    this.statements.insertProgram.run(digest, bytes.length, bytes, uploader, this.now())
    return {digest, size_bytes: bytes.length}
  }

  program(digest: string): Buffer {
    const row = this.statements.program.get(digest)
    if (!row) throw notFound('program')
    return row.bytes
  }

  // §12 jobs, the renter's side

  row(jobId: string): JobRow {
    this.expireDue()
    const row = this.statements.job.get(jobId)
    if (!row) throw notFound('job')
    return row
  }

  /** POST /jobs: checks the program and input against the kind, then opens the job (and, by the trap ratio, a trap). */
  createJob(requesterPubkey: string, body: JobBody): JobDetailView {
    this.expireDue()
    const program = this.statements.program.get(body.program_digest)
    if (!program) throw invalidBody([{field: 'program_digest', message: 'no program with this digest: upload it first with POST /programs'}])
    const parsed = parseProgram(body.kind, program.bytes)
    if ('error' in parsed) throw invalidBody([{field: 'program_digest', message: parsed.error}])
    const input = Buffer.from(body.input_b64, 'base64')
    const badInput = checkInput(body.kind, input)
    if (badInput) throw invalidBody([{field: 'input_b64', message: badInput.error}])
    const auction = body.reward.mode === 'auction'
    const bidSeconds = body.bid_seconds ?? DEFAULT_AUCTION_PHASE_SECONDS
    const revealSeconds = body.reveal_seconds ?? DEFAULT_AUCTION_PHASE_SECONDS
    if (auction && body.deadline_seconds <= bidSeconds + revealSeconds) {
      throw invalidBody([{field: 'deadline_seconds', message: `expected more than bid_seconds + reveal_seconds (${bidSeconds + revealSeconds}): the winner needs time to run the job`}])
    }
    const jobId = randomHex(16)
    this.insertJob(jobId, requesterPubkey, body, program.digest, input, null)
    if (body.kind === 'zk_proof') this.zk.warm()
    if (this.traps.due(body.kind)) this.addTrap(this.row(jobId), parsed, program.bytes, input)
    return this.detailView(this.row(jobId), requesterPubkey)
  }

  private insertJob(jobId: string, requesterPubkey: string, body: JobTerms, programDigest: string, input: Buffer, trap: TrapAnswer | null): void {
    const now = this.now()
    const auction = body.reward.mode === 'auction'
    const bidClosesAt = auction ? now + (body.bid_seconds ?? DEFAULT_AUCTION_PHASE_SECONDS) * 1000 : null
    const revealClosesAt = bidClosesAt === null ? null : bidClosesAt + (body.reveal_seconds ?? DEFAULT_AUCTION_PHASE_SECONDS) * 1000
    this.statements.insertJob.run(
      jobId,
      requesterPubkey,
      body.kind,
      programDigest,
      input,
      sha256Hex(input),
      body.resources.cpu_cores,
      body.resources.memory_mb,
      body.resources.gpu_count ?? 0,
      body.resources.gpu_model ?? null,
      body.reward.mode,
      body.reward.mode === 'fixed' ? parseAmount(body.reward.amount).toString() : null,
      body.reward.mode === 'auction' ? parseAmount(body.reward.max_fee).toString() : null,
      parseAmount(body.collateral).toString(),
      now,
      now + body.deadline_seconds * 1000,
      body.lease_seconds,
      body.max_attempts,
      body.requires_attestation ? 1 : 0,
      body.expect_public_signals ? JSON.stringify(body.expect_public_signals) : null,
      bidClosesAt,
      revealClosesAt,
      now,
      trap ? JSON.stringify(trap) : null,
    )
    this.rescheduled()
    this.context.jobs.notify(OPEN_JOBS_TOPIC)
  }

  /** Makes the trap for a renter job in the background (a zk trap's answer takes a witness computation). */
  private addTrap(job: JobRow, program: ParsedProgram, programBytes: Buffer, input: Buffer): void {
    const seconds = (from: number, to: number) => Math.max(1, Math.round((to - from) / 1000))
    const shape: JobTerms = {
      kind: job.kind,
      resources: {cpu_cores: job.cpu_cores, memory_mb: job.memory_mb, gpu_count: job.gpu_count, ...(job.gpu_model ? {gpu_model: job.gpu_model} : {})},
      reward:
        job.reward_mode === 'fixed'
          ? {mode: 'fixed', amount: formatAmount(BigInt(job.reward_micro ?? '0'))}
          : {mode: 'auction', max_fee: formatAmount(BigInt(job.max_fee_micro ?? '0'))},
      collateral: formatAmount(BigInt(job.collateral_micro)),
      deadline_seconds: seconds(job.created_at, job.deadline),
      lease_seconds: job.lease_seconds,
      max_attempts: job.max_attempts,
      requires_attestation: job.requires_attestation === 1,
      ...(job.bid_closes_at !== null && job.reveal_closes_at !== null
        ? {bid_seconds: seconds(job.created_at, job.bid_closes_at), reveal_seconds: seconds(job.bid_closes_at, job.reveal_closes_at)}
        : {}),
    }
    this.traps
      .plan(program, programBytes, input)
      .then((plan) => {
        if (!plan || this.context.lifetime.aborted) return
        const digest = sha256Hex(plan.program)
        this.context.db.transaction(() => {
          this.statements.insertProgram.run(digest, plan.program.length, plan.program, this.trapRequester, this.now())
          // Each trap has a requester key of its own that nobody holds.
          this.insertJob(randomHex(16), randomHex(32), shape, digest, plan.input, plan.answer)
        })()
      })
      .catch((error: unknown) => {
        if (!this.context.lifetime.aborted) this.context.logError(error)
      })
  }

  /** GET /jobs/{id}: the requester, or the main key of a provider that leased it (who sees its own result only). */
  jobFor(jobId: string, caller: string): JobDetailView {
    const row = this.row(jobId)
    if (caller === row.requester_pubkey) return this.detailView(row, caller)
    if (this.statements.hasLeased.get(jobId, caller) !== undefined) return this.detailView(row, caller)
    throw new HttpError(403, 'permission_denied', 'only the requester, or the main key of a provider that leased this job, may read it')
  }

  private detailView(row: JobRow, caller: string): JobDetailView {
    const requester = caller === row.requester_pubkey
    const lease = requester
      ? row.result_lease_id === null
        ? undefined
        : this.statements.lease.get(row.result_lease_id)
      : this.statements.latestLeaseOf.get(row.job_id, caller)
    const settled = lease && (lease.status === 'accepted' || lease.status === 'rejected') ? lease : undefined
    return {
      ...jobView(row),
      ...(requester ? {requester_pubkey: row.requester_pubkey} : {}),
      max_attempts: row.max_attempts,
      ...(requester && row.expect_public_signals ? {expect_public_signals: fromJsonColumn<string[]>(row.expect_public_signals) ?? []} : {}),
      status_reason: row.status_reason,
      updated_at: row.updated_at,
      ...(row.winner_pubkey ? {winner: row.winner_pubkey} : {}),
      result: settled?.envelope ? (JSON.parse(settled.envelope) as SignedResultEnvelope) : null,
      verdict: settled ? verdictOf(settled) : null,
    }
  }

  /** GET /jobs/{id}/output (devnet): the bytes of the job's settled result, for its requester. */
  resultOutput(jobId: string, caller: string): Buffer {
    const row = this.row(jobId)
    if (caller !== row.requester_pubkey) throw new HttpError(403, 'permission_denied', 'only the requester may read the output of this job')
    const lease = row.result_lease_id === null ? undefined : this.statements.lease.get(row.result_lease_id)
    if (!lease?.envelope) throw notFound('result')
    return this.outputBytes(lease.lease_id, JSON.parse(lease.envelope) as SignedResultEnvelope)
  }

  /** POST /jobs/{id}/cancel: an open job (an auction too, before it is leased) becomes `cancelled`. */
  cancel(jobId: string, caller: string): JobDetailView {
    const row = this.row(jobId)
    if (caller !== row.requester_pubkey) throw new HttpError(403, 'permission_denied', 'only the requester may cancel this job')
    if (row.status !== 'open') throw invalidTransition(`a job that is ${row.status} cannot be cancelled`)
    this.statements.setJobStatus.run('cancelled', 'cancelled by the requester', this.now(), jobId)
    this.rescheduled()
    return this.detailView(this.row(jobId), caller)
  }

  // §12 the agent's side

  private facts(providerPubkey: string): ProviderFacts {
    const row = this.statements.provider.get(providerPubkey)
    if (!row) throw notFound('provider')
    const capacity = Capacity.safeParse(fromJsonColumn<unknown>(row.capacity))
    return {
      pubkey: providerPubkey,
      paused: row.status !== 'active',
      draining: row.heartbeat_status === 'draining',
      capabilities: new Set(fromJsonColumn<string[]>(row.capabilities) ?? []),
      capacity: capacity.success ? capacity.data : undefined,
      busy: this.tierLoad(providerPubkey),
      maxConcurrent: this.stake.maxConcurrent(providerPubkey),
      refused: new Set(this.statements.refusedJobs.all(providerPubkey)),
    }
  }

  /** Why this provider may not take this kind of job at all (§12's offer rules but the tier and attestation), if it may not. */
  private unfit(job: JobRow, facts: ProviderFacts): string | undefined {
    if (facts.paused) return 'the provider is paused'
    if (facts.draining) return 'the agent is draining (its last heartbeat said so)'
    if (!facts.capabilities.has(`job:${job.kind}`)) return `the last heartbeat does not list job:${job.kind} in its capabilities`
    if (!facts.capacity) return 'the last heartbeat reported no capacity'
    if (!fits(job, facts.capacity)) return 'the job\'s resources exceed the capacity of the last heartbeat'
    if (facts.refused.has(job.job_id)) return 'this provider failed this job before as not retryable'
    return undefined
  }

  private offered(job: JobRow, facts: ProviderFacts, agentPubkey: string, now: number): boolean {
    if (job.status !== 'open' || job.deadline <= now) return false
    if (this.unfit(job, facts)) return false
    if (job.requires_attestation === 1 && !this.attestation.enrolled(agentPubkey)) return false
    if (job.reward_mode === 'auction') {
      // Listed to whom has something to do: bidding, who may run it and hasn't committed; revealing, who committed
      // and hasn't revealed; closed, the winner, to lease it. A long poll doesn't answer at once with work already done.
      const phase = auctionPhase(job, now)
      const standing = this.auctions.standing(job.job_id, facts.pubkey)
      if (phase === 'bidding') return standing === 'none'
      if (phase === 'revealing') return standing === 'committed'
      if (job.winner_pubkey !== facts.pubkey) return false
    }
    return facts.maxConcurrent === null || facts.busy < facts.maxConcurrent
  }

  /** GET jobs/open: the open jobs this provider may take now (§12's rules), oldest first. */
  openJobs(providerPubkey: string, agentPubkey: string): JobView[] {
    this.expireDue()
    const now = this.now()
    const facts = this.facts(providerPubkey)
    return this.statements.openJobs
      .all(now)
      .filter((job) => this.offered(job, facts, agentPubkey, now))
      .map(jobView)
  }

  /** The input bytes, to a provider that leased the job or to which it is offered now. */
  input(providerPubkey: string, agentPubkey: string, jobId: string): Buffer {
    const job = this.row(jobId)
    const leased = this.statements.hasLeased.get(jobId, providerPubkey) !== undefined
    if (!leased && !this.offered(job, this.facts(providerPubkey), agentPubkey, this.now())) throw notFound('job')
    const input = this.statements.jobInput.get(jobId)
    if (!input) throw notFound('job')
    return input
  }

  /** The job as an auction, for §13 routes: 404 for another kind of job, 409 `job_closed` once it isn't open. */
  auctionJob(jobId: string): JobRow {
    const job = this.row(jobId)
    if (job.reward_mode !== 'auction') throw notFound('auction')
    return job
  }

  /** §13: a commitment, from a provider that may run the job. */
  commit(providerPubkey: string, agentPubkey: string, jobId: string, commitment: string): ReturnType<AuctionBook['commit']> {
    const job = this.auctionJob(jobId)
    if (job.status !== 'open') throw new HttpError(409, 'job_closed', `the job is ${job.status}`)
    const unfit = this.unfit(job, this.facts(providerPubkey))
    if (unfit) throw new HttpError(409, 'not_eligible', `this provider may not take this job: ${unfit}`)
    if (job.requires_attestation === 1 && !this.attestation.enrolled(agentPubkey)) throw attestationRequired()
    return this.auctions.commit(job, providerPubkey, agentPubkey, commitment)
  }

  reveal(providerPubkey: string, jobId: string, fee: string, salt: string): ReturnType<AuctionBook['reveal']> {
    const job = this.auctionJob(jobId)
    if (job.status === 'cancelled') throw new HttpError(409, 'job_closed', 'the job was cancelled')
    return this.auctions.reveal(job, providerPubkey, fee, salt)
  }

  /** POST lease: one active lease per job, collateral locked from the stake, an auction job only to its winner. */
  lease(providerPubkey: string, agentPubkey: string, jobId: string): LeaseView {
    const job = this.row(jobId)
    const now = this.now()
    if (job.status === 'leased') throw new HttpError(409, 'leased', 'the job has an active lease')
    if (job.status !== 'open' || job.deadline <= now) throw new HttpError(409, 'job_closed', `the job is ${job.status}${job.status_reason ? ` (${job.status_reason})` : ''}`)
    if (job.reward_mode === 'auction') {
      if (auctionPhase(job, now) !== 'closed') throw new HttpError(409, 'auction_open', `the auction closes at ${job.reveal_closes_at}; only its winner may lease the job then`)
      if (job.winner_pubkey !== providerPubkey) throw new HttpError(409, 'not_winner', 'another provider won the auction for this job')
    }
    const facts = this.facts(providerPubkey)
    const unfit = this.unfit(job, facts)
    if (unfit) throw new HttpError(409, 'not_eligible', `this provider may not take this job: ${unfit}`)
    if (job.requires_attestation === 1 && !this.attestation.enrolled(agentPubkey)) throw attestationRequired()
    if (facts.maxConcurrent !== null && facts.busy >= facts.maxConcurrent) {
      throw new HttpError(409, 'tier_limit', `the stake tier allows ${facts.maxConcurrent} leases and contracts at once; this provider has ${facts.busy}`)
    }
    const leaseId = randomHex(16)
    const collateral = BigInt(job.collateral_micro)
    this.context.db.transaction(() => {
      this.stake.lockCollateral(providerPubkey, collateral)
      this.statements.leaseJob.run(now, jobId)
      this.statements.insertLease.run(leaseId, jobId, providerPubkey, agentPubkey, now, Math.min(now + job.lease_seconds * 1000, job.deadline), job.deadline, collateral.toString(), job.trap_answer === null ? 0 : 1)
    })()
    this.rescheduled()
    return this.leaseView(this.ownLease(providerPubkey, leaseId))
  }

  private ownLease(providerPubkey: string, leaseId: string): LeaseRow {
    this.expireDue()
    const lease = this.statements.lease.get(leaseId)
    if (!lease || lease.provider_pubkey !== providerPubkey) throw notFound('lease')
    return lease
  }

  private leaseView(lease: LeaseRow): LeaseView {
    const job = this.statements.job.get(lease.job_id)
    if (!job) throw new Error(`lease ${lease.lease_id} names a job that is missing`)
    return {
      lease_id: lease.lease_id,
      job_id: lease.job_id,
      agent_pubkey: lease.agent_pubkey,
      status: lease.status,
      leased_at: lease.leased_at,
      expires_at: lease.expires_at,
      deadline: lease.deadline,
      collateral: formatAmount(BigInt(lease.collateral_micro)),
      job: jobView(job),
      ...(lease.reason ? {reason: lease.reason} : {}),
      ...(lease.reward_micro ? {reward: formatAmount(BigInt(lease.reward_micro))} : {}),
      ...(lease.forfeited_micro ? {forfeited: formatAmount(BigInt(lease.forfeited_micro))} : {}),
    }
  }

  leases(providerPubkey: string, status: LeaseStatus | undefined): {leases: LeaseView[]} {
    this.expireDue()
    const rows = status ? this.statements.leasesWithStatus.all(providerPubkey, status) : this.statements.leasesOf.all(providerPubkey)
    return {leases: rows.map((lease) => this.leaseView(lease))}
  }

  private assertActive(lease: LeaseRow): void {
    if (lease.status === 'expired') throw new HttpError(410, 'lease_expired', `the lease expired at ${lease.expires_at}`)
    if (lease.status !== 'active') throw invalidTransition(`the lease is ${lease.status}`)
  }

  /** PUT lease: renew until `min(now + lease_seconds, deadline)`; 410 `lease_expired` once it has expired. */
  renew(providerPubkey: string, leaseId: string): LeaseView {
    const lease = this.ownLease(providerPubkey, leaseId)
    this.assertActive(lease)
    const job = this.statements.job.get(lease.job_id)
    if (!job) throw notFound('job')
    this.statements.renew.run(Math.min(this.now() + job.lease_seconds * 1000, lease.deadline), leaseId)
    this.rescheduled()
    return this.leaseView(this.ownLease(providerPubkey, leaseId))
  }

  /** PUT output: an output over 512 KiB, uploaded before the envelope that names it by digest. */
  putOutput(providerPubkey: string, leaseId: string, bytes: Buffer): {digest: string; size_bytes: number} {
    const lease = this.ownLease(providerPubkey, leaseId)
    if (lease.status === 'submitted' || lease.status === 'accepted' || lease.status === 'rejected') {
      throw new HttpError(409, 'already_exists', `the lease is ${lease.status}: its result is in`)
    }
    this.assertActive(lease)
    const digest = sha256Hex(bytes)
    this.statements.insertOutput.run(leaseId, digest, bytes.length, bytes, this.now())
    return {digest, size_bytes: bytes.length}
  }

  /** POST fail: the lease ends (its collateral back); the job is open again while attempts and time remain. */
  fail(providerPubkey: string, leaseId: string, body: z.infer<typeof FailBody>): LeaseView {
    const lease = this.ownLease(providerPubkey, leaseId)
    this.assertActive(lease)
    const now = this.now()
    let reopened = false
    this.context.db.transaction(() => {
      this.statements.endLease.run('failed', now, '0', body.reason, null, null, body.retryable ? 1 : 0, leaseId)
      this.stake.releaseCollateral(providerPubkey, BigInt(lease.collateral_micro), 0n)
      reopened = this.reopenOrFail(lease.job_id, now)
    })()
    this.settled(reopened, [providerPubkey])
    return this.leaseView(this.ownLease(providerPubkey, leaseId))
  }

  /**
   * POST result. Refused (400) when it can't be this lease's result: another lease or job, a signer other than the
   * lease's agent key, a signature that doesn't verify, an output missing or not matching its digest. Otherwise the
   * lease is `submitted` and the verdict follows verification; the same envelope again gets the same verdict, and
   * another one for a lease with a result is 409.
   */
  async submitResult(providerPubkey: string, leaseId: string, envelope: ResultEnvelopeBody): Promise<Verdict> {
    const lease = this.ownLease(providerPubkey, leaseId)
    if (envelope.lease_id !== leaseId) throw invalidBody([{field: 'lease_id', message: 'not the lease in the path'}])
    if (envelope.job_id !== lease.job_id) throw invalidBody([{field: 'job_id', message: 'not the job of this lease'}])
    const text = canonicalJson(envelope)
    if (lease.envelope !== null) {
      if (text !== lease.envelope) throw new HttpError(409, 'already_exists', 'this lease already has a result: another output can\'t replace it')
      return this.verification(leaseId)
    }
    this.assertActive(lease)
    if (envelope.signer !== lease.agent_pubkey) throw invalidBody([{field: 'signer', message: 'not the agent key that holds this lease'}])
    if (!verifyResultEnvelope(envelope)) throw invalidBody([{field: 'signature', message: 'does not verify (outpost-result-v1 over the canonical JSON)'}])
    this.outputBytes(leaseId, envelope)
    this.statements.submit.run(text, this.now(), leaseId)
    return this.verification(leaseId)
  }

  /** The output an envelope names: inline (at most 512 KiB) or uploaded for this lease; 400 when it isn't there. */
  private outputBytes(leaseId: string, envelope: SignedResultEnvelope): Buffer {
    const {output} = envelope
    if (output.data_b64 !== undefined) {
      const bytes = Buffer.from(output.data_b64, 'base64')
      if (bytes.length > MAX_INLINE_OUTPUT_BYTES) throw invalidBody([{field: 'output.data_b64', message: 'over 512 KiB: upload the output with PUT .../output and name it by digest'}])
      if (bytes.length !== output.size_bytes) throw invalidBody([{field: 'output.size_bytes', message: `the data is ${bytes.length} bytes`}])
      if (sha256Hex(bytes) !== output.digest) throw invalidBody([{field: 'output.digest', message: 'not the sha256 of data_b64'}])
      return bytes
    }
    const uploaded = this.statements.output.get(leaseId, output.digest)
    if (!uploaded) throw invalidBody([{field: 'output.digest', message: 'no output with this digest was uploaded for this lease (PUT .../output first, or send data_b64)'}])
    if (uploaded.size_bytes !== output.size_bytes) throw invalidBody([{field: 'output.size_bytes', message: `the uploaded output is ${uploaded.size_bytes} bytes`}])
    return uploaded.bytes
  }

  /** The verdict of a submitted lease: settled, being verified, or verified now. */
  private verification(leaseId: string): Promise<Verdict> {
    const lease = this.statements.lease.get(leaseId)
    const settled = lease && verdictOf(lease)
    if (settled) return Promise.resolve(settled)
    let running = this.verifications.get(leaseId)
    if (!running) {
      running = this.verifyAndSettle(leaseId).finally(() => this.verifications.delete(leaseId))
      this.verifications.set(leaseId, running)
    }
    return running
  }

  private async verifyAndSettle(leaseId: string): Promise<Verdict> {
    const lease = this.statements.lease.get(leaseId)
    const job = lease && this.statements.job.get(lease.job_id)
    if (!lease?.envelope || !job) throw new Error(`lease ${leaseId} has no submitted result to verify`)
    const envelope = JSON.parse(lease.envelope) as SignedResultEnvelope
    const outcome = await this.decide(lease, job, envelope)
    if (this.context.lifetime.aborted) throw new HttpError(503, 'internal', 'the marketplace is stopping; post the result again')
    const now = this.now()
    const collateral = BigInt(lease.collateral_micro)
    let reopened = false
    this.context.db.transaction(() => {
      if (outcome.verdict === 'accepted') {
        const reward = BigInt((job.reward_mode === 'fixed' ? job.reward_micro : job.clearing_fee_micro) ?? '0')
        this.statements.endLease.run('accepted', now, '0', null, null, reward.toString(), null, leaseId)
        this.stake.releaseCollateral(lease.provider_pubkey, collateral, 0n)
        this.stake.creditReward(lease.provider_pubkey, reward)
        this.statements.setJobStatus.run('completed', null, now, job.job_id)
      } else {
        this.statements.endLease.run('rejected', now, collateral.toString(), outcome.reason, outcome.detail ?? null, null, null, leaseId)
        this.stake.releaseCollateral(lease.provider_pubkey, collateral, collateral)
        reopened = this.reopenOrFail(job.job_id, now)
      }
      this.statements.setResultLease.run(leaseId, now, job.job_id)
    })()
    this.settled(reopened, [lease.provider_pubkey])
    const settled = this.statements.lease.get(leaseId)
    const verdict = settled && verdictOf(settled)
    if (!verdict) throw new Error(`lease ${leaseId} was settled without a verdict`)
    return verdict
  }

  /** Checks a result: the digests, the attestation (§14), the output for its kind (§12), and a trap's known answer. */
  private async decide(lease: LeaseRow, job: JobRow, envelope: SignedResultEnvelope): Promise<Verdict | {verdict: 'accepted'}> {
    const reject = (reason: string, detail: string): Verdict => ({verdict: 'rejected', reason, detail})
    if (envelope.program_digest !== job.program_digest || envelope.input_digest !== job.input_digest) {
      return reject('digest_mismatch', 'the envelope names another program or input than the job\'s')
    }
    if (job.requires_attestation === 1 || envelope.attestation) {
      const failure = this.attestation.check(envelope, lease.lease_id)
      if (failure) return reject('bad_attestation', failure)
    }
    const output = this.outputBytes(lease.lease_id, envelope)
    const trap = fromJsonColumn<TrapAnswer>(job.trap_answer)
    const program = this.program(job.program_digest)
    switch (job.kind) {
      case 'zk_proof': {
        const zkProgram = ZkProgram.parse(JSON.parse(program.toString('utf8')))
        const answer = parseZkOutput(output)
        if (!answer) return reject('bad_output', 'the output is not JSON {proof, public_signals} as snarkjs writes them')
        if (!(await this.zk.verify(zkProgram.verification_key, answer.public_signals, answer.proof))) {
          return reject('invalid_proof', 'the Groth16 proof does not verify with the program\'s verification key')
        }
        const expected = fromJsonColumn<string[]>(job.expect_public_signals)
        if (expected && canonicalJson(expected) !== canonicalJson(answer.public_signals)) {
          return reject('public_signals_mismatch', 'the public signals are not the ones the job expects')
        }
        if (trap?.kind === 'zk_proof' && canonicalJson(trap.public_signals) !== canonicalJson(answer.public_signals)) {
          return reject('trap_failed', 'the public signals are not the known answer')
        }
        break
      }
      case 'quantum_circuit': {
        const shape = qasmShape(program.toString('utf8'))
        const shots = parseQuantumInput(this.statements.jobInput.get(job.job_id) ?? Buffer.alloc(0))?.shots
        const counts = shape && shots !== undefined ? quantumCounts(output, shape, shots) : undefined
        if (!counts || shots === undefined) return reject('bad_output', 'the output is not JSON {counts} of bitstrings of the circuit\'s width summing to the shots')
        if (trap?.kind === 'quantum_circuit' && !quantumTrapPasses(counts, trap, shots)) return reject('trap_failed', 'the counts are not the circuit\'s known distribution')
        break
      }
      case 'container': {
        if (trap?.kind === 'container' && sha256Hex(output) !== trap.output_digest) return reject('trap_failed', 'the output is not the known answer')
        break
      }
    }
    return {verdict: 'accepted'}
  }

  /** After a lease ends without an accepted result: open again while attempts and time remain, else failed. */
  private reopenOrFail(jobId: string, now: number): boolean {
    const job = this.statements.job.get(jobId)
    if (!job || job.status !== 'leased') return false
    if (now >= job.deadline) {
      this.statements.setJobStatus.run('failed', 'deadline_passed', now, jobId)
      return false
    }
    if (job.attempts_used >= job.max_attempts) {
      this.statements.setJobStatus.run('failed', 'no_attempts_left', now, jobId)
      return false
    }
    this.statements.setJobStatus.run('open', null, now, jobId)
    return true
  }

  /** After leases end: a reopened job may go to anyone; each provider whose lease ended has room for another. */
  private settled(reopened: boolean, providers: Iterable<string> = []): void {
    this.rescheduled()
    if (reopened) this.context.jobs.notify(OPEN_JOBS_TOPIC)
    for (const providerPubkey of new Set(providers)) this.context.jobs.notify(providerPubkey)
  }

  /**
   * The time-driven changes, in one transaction: active leases past `expires_at` expire (half their collateral
   * forfeited) and their jobs reopen or fail; auctions past `reveal_closes_at` close (a winner, or the job fails with
   * nobody revealed); open jobs past their deadline fail. Writes only once the earliest such time has passed.
   */
  expireDue(): void {
    const now = this.now()
    this.nextEvent ??= this.statements.nextEvent.get() ?? Number.POSITIVE_INFINITY
    if (now < this.nextEvent) return
    let reopened = false
    const freed: string[] = []
    this.context.db.transaction(() => {
      for (const lease of this.statements.dueLeases.all(now)) {
        freed.push(lease.provider_pubkey)
        const collateral = BigInt(lease.collateral_micro)
        const forfeited = collateral / 2n
        this.statements.endLease.run('expired', lease.expires_at, forfeited.toString(), 'expired', null, null, null, lease.lease_id)
        this.stake.releaseCollateral(lease.provider_pubkey, collateral, forfeited)
        reopened = this.reopenOrFail(lease.job_id, now) || reopened
      }
      for (const job of this.statements.dueAuctions.all(now)) {
        const outcome = this.auctions.outcome(job.job_id)
        this.statements.closeAuction.run(outcome?.winner ?? null, outcome?.clearingFeeMicro.toString() ?? null, now, job.job_id)
        if (outcome) reopened = true
        else this.statements.setJobStatus.run('failed', 'no_reveals', now, job.job_id)
      }
      for (const {job_id: jobId} of this.statements.overdueJobs.all(now)) this.statements.setJobStatus.run('failed', 'deadline_passed', now, jobId)
    })()
    this.settled(reopened, freed)
  }

  /** Reads the next time-driven change again and sets the timer for it; the server's stop clears it. */
  private rescheduled(): void {
    this.nextEvent = this.statements.nextEvent.get() ?? Number.POSITIVE_INFINITY
    clearTimeout(this.timer)
    if (this.context.lifetime.aborted || this.nextEvent === Number.POSITIVE_INFINITY) return
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, this.nextEvent - this.now()))
    this.timer = setTimeout(() => {
      if (this.context.lifetime.aborted) return
      try {
        this.expireDue()
      } catch (error) {
        this.context.logError(error)
      }
      this.rescheduled()
    }, delay)
    this.timer.unref()
  }

  /** §12 SLA over the leases taken in the last `days` days; §13 adds unrevealed commitments to `failed`. */
  sla(providerPubkey: string, days: number): SlaView {
    this.expireDue()
    const now = this.now()
    const since = now - days * DAY_MS
    const counts = Object.fromEntries(this.statements.slaCounts.all(providerPubkey, since).map((row) => [row.status, row.n])) as Partial<Record<LeaseStatus, number>>
    const accepted = counts.accepted ?? 0
    const rejected = counts.rejected ?? 0
    const expired = counts.expired ?? 0
    const failedLeases = counts.failed ?? 0
    const ended = accepted + rejected + expired + failedLeases
    const latencies = this.statements.slaLatencies.all(providerPubkey, since)
    const traps = this.statements.slaTraps.get(providerPubkey, since)
    return {
      days,
      leases: Object.values(counts).reduce((sum, n) => sum + (n ?? 0), 0),
      accepted,
      rejected,
      expired,
      failed: failedLeases + this.auctions.unrevealed(providerPubkey, since, now),
      on_time_percent: ended === 0 ? null : Math.round(((accepted + rejected) / ended) * 10_000) / 100,
      latency_ms: {p50: percentile(latencies, 0.5), p95: percentile(latencies, 0.95)},
      traps: {passed: traps?.passed ?? 0, failed: traps?.failed ?? 0},
    }
  }
}
