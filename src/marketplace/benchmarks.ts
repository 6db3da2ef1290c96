import type {z} from 'zod'

import {computeWorkDigest} from '../core/benchmark-workload.js'
import {randomHex} from '../core/signing.js'
import type {MarketplaceContext} from './context.js'
import {HttpError, invalidBody, notFound} from './http-error.js'
import type {BenchmarkReportBody} from './schemas.js'

/** §9: a challenge seed is valid this long, once. */
export const CHALLENGE_TTL_MS = 15 * 60 * 1000

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

  constructor(private readonly context: MarketplaceContext) {
    const {db} = context
    this.statements = {
      insertChallenge: db.prepare('INSERT INTO benchmark_challenges (challenge_id, provider_pubkey, seed, expires_at) VALUES (?, ?, ?, ?)'),
      challenge: db.prepare<[string], ChallengeRow>('SELECT * FROM benchmark_challenges WHERE challenge_id = ?'),
      useChallenge: db.prepare('UPDATE benchmark_challenges SET used_at = ? WHERE challenge_id = ? AND used_at IS NULL'),
      insertReport: db.prepare(
        `INSERT INTO benchmark_reports (report_id, provider_pubkey, challenge_id, machine, results, work_digest, submitted_by, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      report: db.prepare<[string], ReportRow>('SELECT * FROM benchmark_reports WHERE report_id = ?'),
      reports: db.prepare<[string], ReportRow>('SELECT * FROM benchmark_reports WHERE provider_pubkey = ? ORDER BY created_at, report_id'),
    }
  }

  createChallenge(providerPubkey: string): {challenge_id: string; seed: string; expires_at: number} {
    const challenge = {challenge_id: randomHex(16), seed: randomHex(32), expires_at: this.context.clock.now() + CHALLENGE_TTL_MS}
    this.statements.insertChallenge.run(challenge.challenge_id, providerPubkey, challenge.seed, challenge.expires_at)
    return challenge
  }

  /**
   * Accepts a report only for a live, unused challenge of this provider whose seeded workload ends on the reported
   * digest. A wrong digest leaves the challenge unused (the digest can't be guessed, so retrying costs nothing).
   */
  submit(providerPubkey: string, submittedBy: string, body: z.infer<typeof BenchmarkReportBody>): BenchmarkReportView {
    const challenge = this.statements.challenge.get(body.challenge_id)
    if (!challenge || challenge.provider_pubkey !== providerPubkey) throw notFound('challenge')
    const now = this.context.clock.now()
    if (challenge.used_at !== null) throw new HttpError(409, 'challenge_used', 'this challenge already has a report: ask for a new one')
    if (challenge.expires_at <= now) throw new HttpError(409, 'challenge_expired', 'this challenge expired (15 min): ask for a new one')
    if (computeWorkDigest(challenge.seed) !== body.work_digest) {
      throw invalidBody([{field: 'work_digest', message: 'does not match the seeded workload for this challenge'}])
    }
    const reportId = randomHex(16)
    this.context.db.transaction(() => {
      if (this.statements.useChallenge.run(now, challenge.challenge_id).changes === 0) {
        throw new HttpError(409, 'challenge_used', 'this challenge already has a report: ask for a new one')
      }
      this.statements.insertReport.run(
        reportId,
        providerPubkey,
        challenge.challenge_id,
        JSON.stringify(body.machine),
        JSON.stringify(body.results),
        body.work_digest,
        submittedBy,
        now,
      )
    })()
    const row = this.statements.report.get(reportId)
    if (!row) throw new Error('the report just written is missing')
    return reportView(row)
  }

  list(providerPubkey: string): {reports: BenchmarkReportView[]} {
    return {reports: this.statements.reports.all(providerPubkey).map(reportView)}
  }
}
