import {extname} from 'node:path'
import {fileURLToPath} from 'node:url'
import {Worker} from 'node:worker_threads'
import type {z} from 'zod'

import {randomHex} from '../core/signing.js'
import type {MarketplaceContext} from './context.js'
import {RateLimiter} from './rate-limiter.js'
import {HttpError, invalidBody, notFound} from './http-error.js'
import type {BenchmarkReportBody} from './schemas.js'

/** §9: a challenge seed is valid this long, once. */
export const CHALLENGE_TTL_MS = 15 * 60 * 1000
/**
 * Challenges a provider may take per hour (`devnet start --benchmark-attempts-per-hour`). A challenge is consumed
 * by the first report sent for it, right or wrong, so this is also the number of verifications it can cause.
 */
export const DEFAULT_BENCHMARK_ATTEMPTS_PER_HOUR = 12
/**
 * Verifications started per minute, all providers together (`--benchmark-verifications-per-minute`): providers cost
 * nothing to register, so the hourly limit per provider alone does not bound the CPU that reports can take. At about
 * 150 ms of one core each, 12 a minute keep verification under 5% of a core whatever the flood.
 */
export const DEFAULT_BENCHMARK_VERIFICATIONS_PER_MINUTE = 12
/** Verifications waiting for the worker thread, all providers together; past it a report is refused (429). */
export const MAX_QUEUED_VERIFICATIONS = 16
const HOUR_MS = 3_600_000
const BUSY_RETRY_AFTER_SECONDS = 2

const rateLimited = (message: string, retryAfterSeconds: number) =>
  new HttpError(429, 'rate_limited', message, undefined, {'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds)))})

type VerifierAnswer = {id: number; digest: string} | {id: number; error: string}

/** The worker thread that re-runs the seeded workload off the event loop; started on first use, ended with the server. */
class DigestWorker {
  private worker: Worker | undefined
  private nextId = 0
  private readonly waiting = new Map<number, {resolve: (digest: string) => void; reject: (error: Error) => void}>()

  constructor(lifetime: AbortSignal) {
    lifetime.addEventListener('abort', () => void this.worker?.terminate(), {once: true})
  }

  get queued(): number {
    return this.waiting.size
  }

  digest(seed: string): Promise<string> {
    const worker = (this.worker ??= this.start())
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.waiting.set(id, {resolve, reject})
      worker.postMessage({id, seed})
    })
  }

  private start(): Worker {
    const worker = spawnVerifier()
    worker.on('message', (answer: VerifierAnswer) => {
      const waiter = this.waiting.get(answer.id)
      this.waiting.delete(answer.id)
      if ('digest' in answer) waiter?.resolve(answer.digest)
      else waiter?.reject(new Error(`benchmark verification failed: ${answer.error}`))
    })
    const fail = (error: Error) => {
      this.worker = undefined
      for (const waiter of this.waiting.values()) waiter.reject(error)
      this.waiting.clear()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => fail(new Error(`the benchmark verifier exited (${code})`)))
    worker.unref()
    return worker
  }
}

function spawnVerifier(): Worker {
  const url = new URL(`./benchmark-verifier${extname(fileURLToPath(import.meta.url))}`, import.meta.url)
  if (!url.pathname.endsWith('.ts')) return new Worker(url)
  // Run from TypeScript sources (tests, the bench): the worker registers the loader tsx gives this thread.
  const loader = import.meta.resolve('tsx/esm/api')
  return new Worker(`import(${JSON.stringify(loader)}).then(({register}) => { register(); return import(${JSON.stringify(url.href)}) })`, {eval: true})
}

interface ChallengeRow {
  challenge_id: string
  provider_pubkey: string
  seed: string
  expires_at: number
  used_at: number | null
}

interface ReportRow {
  report_id: string
  provider_pubkey: string
  challenge_id: string
  machine: string
  results: string
  work_digest: string
  submitted_by: string
  created_at: number
}

export interface BenchmarkReportView {
  report_id: string
  provider_pubkey: string
  challenge_id: string
  machine: Record<string, unknown>
  results: Record<string, unknown>
  work_digest: string
  submitted_by: string
  created_at: number
  /** The server re-ran the seeded workload and got the same digest. */
  verified: true
}

function reportView(row: ReportRow): BenchmarkReportView {
  return {
    report_id: row.report_id,
    provider_pubkey: row.provider_pubkey,
    challenge_id: row.challenge_id,
    machine: JSON.parse(row.machine) as Record<string, unknown>,
    results: JSON.parse(row.results) as Record<string, unknown>,
    work_digest: row.work_digest,
    submitted_by: row.submitted_by,
    created_at: row.created_at,
    verified: true,
  }
}

export class BenchmarkBook {
  private readonly statements
  private readonly verifier: DigestWorker
  /** Providers with a report being verified now: one at a time each. */
  private readonly verifying = new Set<string>()
  private readonly verifications: RateLimiter

  constructor(private readonly context: MarketplaceContext) {
    const {db} = context
    this.verifier = new DigestWorker(context.lifetime)
    // A burst of a quarter minute's worth, then the steady rate.
    const perMinute = context.settings.benchmarkVerificationsPerMinute
    this.verifications = new RateLimiter(perMinute / 60, `the marketplace verifies at most ${perMinute} benchmark reports a minute: try again shortly`, 15)
    this.statements = {
      insertChallenge: db.prepare('INSERT INTO benchmark_challenges (challenge_id, provider_pubkey, seed, expires_at) VALUES (?, ?, ?, ?)'),
      challenge: db.prepare<[string], ChallengeRow>('SELECT * FROM benchmark_challenges WHERE challenge_id = ?'),
      issuedSince: db
        .prepare<[string, number], {count: number; earliest: number | null}>(
          'SELECT count(*) AS count, min(expires_at) AS earliest FROM benchmark_challenges WHERE provider_pubkey = ? AND expires_at > ?',
        ),
      useChallenge: db.prepare('UPDATE benchmark_challenges SET used_at = ? WHERE challenge_id = ? AND used_at IS NULL'),
      insertReport: db.prepare(
        `INSERT INTO benchmark_reports (report_id, provider_pubkey, challenge_id, machine, results, work_digest, submitted_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      report: db.prepare<[string], ReportRow>('SELECT * FROM benchmark_reports WHERE report_id = ?'),
      reports: db.prepare<[string], ReportRow>('SELECT * FROM benchmark_reports WHERE provider_pubkey = ? ORDER BY created_at, report_id'),
    }
  }

  /** A fresh challenge, at most `benchmarkAttemptsPerHour` per provider in any hour (429 with Retry-After past it). */
  createChallenge(providerPubkey: string): {challenge_id: string; seed: string; expires_at: number} {
    const now = this.context.clock.now()
    // A challenge issued at t expires at t + TTL: those issued within the last hour expire after now - hour + TTL.
    const {count, earliest} = this.statements.issuedSince.get(providerPubkey, now - HOUR_MS + CHALLENGE_TTL_MS) ?? {count: 0, earliest: null}
    const allowed = this.context.settings.benchmarkAttemptsPerHour
    if (count >= allowed) {
      const freesAt = (earliest ?? now) - CHALLENGE_TTL_MS + HOUR_MS
      throw rateLimited(`this provider took ${allowed} benchmark challenges in the last hour, its most`, (freesAt - now) / 1000)
    }
    const challenge = {challenge_id: randomHex(16), seed: randomHex(32), expires_at: now + CHALLENGE_TTL_MS}
    this.statements.insertChallenge.run(challenge.challenge_id, providerPubkey, challenge.seed, challenge.expires_at)
    return challenge
  }

  /**
   * Accepts a report only for a live, unused challenge of this provider whose seeded workload ends on the reported
   * digest. The challenge is consumed by the first report sent for it, right or wrong (a wrong digest costs the
   * provider the challenge, so each verification costs it one of its hourly attempts), and the workload is re-run
   * on a worker thread, one report per provider at a time.
   */
  async submit(providerPubkey: string, submittedBy: string, body: z.infer<typeof BenchmarkReportBody>): Promise<BenchmarkReportView> {
    const challenge = this.statements.challenge.get(body.challenge_id)
    if (!challenge || challenge.provider_pubkey !== providerPubkey) throw notFound('challenge')
    const now = this.context.clock.now()
    if (challenge.used_at !== null) throw new HttpError(409, 'challenge_used', 'this challenge already had a report: ask for a new one')
    if (challenge.expires_at <= now) throw new HttpError(409, 'challenge_expired', 'this challenge expired (15 min): ask for a new one')
    if (this.verifying.has(providerPubkey)) throw rateLimited('a report of this provider is being verified: send the next when it is done', BUSY_RETRY_AFTER_SECONDS)
    if (this.verifier.queued >= MAX_QUEUED_VERIFICATIONS) throw rateLimited('the marketplace is verifying many reports: try again shortly', BUSY_RETRY_AFTER_SECONDS)
    this.verifications.take('all', now)
    if (this.statements.useChallenge.run(now, challenge.challenge_id).changes === 0) {
      throw new HttpError(409, 'challenge_used', 'this challenge already had a report: ask for a new one')
    }
    this.verifying.add(providerPubkey)
    let digest: string
    try {
      digest = await this.verifier.digest(challenge.seed)
    } finally {
      this.verifying.delete(providerPubkey)
    }
    if (this.context.lifetime.aborted) throw new HttpError(503, 'internal', 'the marketplace is stopping')
    if (digest !== body.work_digest) {
      throw invalidBody([{field: 'work_digest', message: 'does not match the seeded workload for this challenge; the challenge is used up, ask for a new one'}])
    }
    const reportId = randomHex(16)
    this.statements.insertReport.run(
      reportId,
      providerPubkey,
      challenge.challenge_id,
      JSON.stringify(body.machine),
      JSON.stringify(body.results),
      body.work_digest,
      submittedBy,
      this.context.clock.now(),
    )
    const row = this.statements.report.get(reportId)
    if (!row) throw new Error('the report just written is missing')
    return reportView(row)
  }

  list(providerPubkey: string): {reports: BenchmarkReportView[]} {
    return {reports: this.statements.reports.all(providerPubkey).map(reportView)}
  }
}
