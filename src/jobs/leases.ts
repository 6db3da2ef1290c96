import type {ApiClient} from '../core/api/client.js'
import {ApiError} from '../core/api/api-error.js'
import {LEASE_STATUSES, type JobDetail, type Lease, type LeaseStatus, type SlaSummary, type Verdict} from '../core/api/job-schemas.js'
import type {JobKind} from '../core/api/job-kinds.js'
import type {JobsApi} from '../core/api/jobs.js'
import {getJob} from '../core/api/renter-jobs.js'
import {formatAmount, parseAmount} from '../core/decimal.js'
import {ExitCode, UserError} from '../core/errors.js'
import {readResultEnvelopes} from '../core/result-archive.js'
import type {SignedResultEnvelope} from '../core/signing.js'

/** The operator's view of PROTOCOL §12: this provider's leases, one job in full, and its SLA figures. */

export interface LeaseFilters {
  status?: LeaseStatus
  kind?: JobKind
  /** The newest this many. */
  limit?: number
}

export interface LeaseTotals {
  leases: number
  by_status: Partial<Record<LeaseStatus, number>>
  /** Sum of the rewards of accepted leases. */
  rewards: string
  /** Sum of the collateral lost by rejected and expired leases. */
  forfeited: string
}

export interface LeaseListing {
  provider_pubkey: string
  leases: Lease[]
  totals: LeaseTotals
}

/** This provider's leases, newest first: the status filter is the marketplace's, the kind filter applied here. */
export async function listLeases(api: JobsApi, filters: LeaseFilters): Promise<LeaseListing> {
  const all = await api.leases(filters.status)
  const matching = all.filter((lease) => !filters.kind || lease.job?.kind === filters.kind).sort((a, b) => b.leased_at - a.leased_at)
  const leases = filters.limit === undefined ? matching : matching.slice(0, filters.limit)
  return {provider_pubkey: api.providerPubkey, leases, totals: leaseTotals(leases)}
}

export function leaseTotals(leases: readonly Lease[]): LeaseTotals {
  let rewards = 0n
  let forfeited = 0n
  for (const lease of leases) {
    if (lease.status === 'accepted' && lease.reward) rewards += parseAmount(lease.reward)
    if (lease.forfeited) forfeited += parseAmount(lease.forfeited)
  }
  // In the order of the lease's life (active first), so the summary line reads the same every time.
  const byStatus: Partial<Record<LeaseStatus, number>> = {}
  for (const status of LEASE_STATUSES) {
    const count = leases.filter((lease) => lease.status === status).length
    if (count > 0) byStatus[status] = count
  }
  return {leases: leases.length, by_status: byStatus, rewards: formatAmount(rewards), forfeited: formatAmount(forfeited)}
}

/** The verdict a lease's status stands for, in a few words: the marketplace's reason when it gave one. */
export function leaseOutcome(lease: Lease): string {
  switch (lease.status) {
    case 'accepted':
      return 'accepted'
    case 'rejected':
      return `rejected: ${lease.reason ?? 'no reason given'}`
    case 'expired':
      return 'expired (not renewed in time)'
    case 'failed':
      return `failed: ${lease.reason ?? 'no reason given'}`
    case 'submitted':
      return 'being verified'
    case 'active':
      return 'running'
  }
}

const shortTime = (at: number) => new Date(at).toISOString().replace(/\.\d+Z$/, 'Z')

export const LEASE_HEADER = ['lease', 'job', 'kind', 'status', 'verdict', 'reward', 'collateral', 'leased at']

export function leaseRow(lease: Lease): string[] {
  const reward = lease.status === 'accepted' ? (lease.reward ?? '0') : lease.forfeited ? `-${lease.forfeited} forfeited` : '-'
  return [lease.lease_id, lease.job_id, lease.job?.kind ?? '?', lease.status, leaseOutcome(lease), reward, lease.collateral ?? '?', shortTime(lease.leased_at)]
}

export interface JobReport {
  job_id: string
  /** The job as the marketplace describes it: in full with the main key, else as the newest lease carries it. */
  job: JobDetail | Lease['job'] | null
  /** This provider's leases of the job, newest first. */
  leases: Lease[]
  /** The result the marketplace settled (main key), else the newest envelope this host kept for the job. */
  result: SignedResultEnvelope | null
  verdict: Verdict | null
  /** The signed envelopes this host's agent kept for the job (its state dir). */
  archived_envelopes: SignedResultEnvelope[]
  /** Where each part came from, for a person reading it. */
  sources: string[]
}

export interface ShowJobOptions {
  api: JobsApi
  /** Signs with the provider main key: GET /jobs/{id} then gives the job with its settled result and verdict. */
  mainKeyClient?: ApiClient
  stateDir: string
  /** A job id, or the id of one of its leases. */
  id: string
}

function verdictOfLease(lease: Lease): Verdict | null {
  if (lease.status === 'accepted') return {verdict: 'accepted', reward: lease.reward ?? '0'}
  if (lease.status === 'rejected') return {verdict: 'rejected', ...(lease.reason ? {reason: lease.reason} : {})}
  return null
}

/** One job: this provider's leases of it, its result and verdict; from the marketplace and this host's records. */
export async function showJob(options: ShowJobOptions): Promise<JobReport> {
  const id = options.id.toLowerCase()
  if (!/^[0-9a-f]{32}$/.test(id)) {
    throw new UserError(`${options.id} is not a job or lease id (32 hex characters)`, {code: 'usage', exit: ExitCode.usage, suggestion: '`outpost jobs list` shows the ids'})
  }
  const all = await options.api.leases()
  const jobId = all.find((lease) => lease.lease_id === id)?.job_id ?? id
  const leases = all.filter((lease) => lease.job_id === jobId).sort((a, b) => b.leased_at - a.leased_at)
  const sources: string[] = []
  if (leases.length > 0) sources.push(`${leases.length} lease(s) of this provider (GET /providers/{pk}/leases, agent key)`)

  let detail: JobDetail | undefined
  if (options.mainKeyClient) {
    try {
      detail = await getJob(options.mainKeyClient, jobId)
      sources.push('the job, its settled result and verdict (GET /jobs/{id}, main key)')
    } catch (error) {
      // Not a job this provider leased (403) or no job at all (404): said below from the leases.
      if (!(error instanceof ApiError) || (error.status !== 403 && error.status !== 404)) throw error
    }
  }
  if (leases.length === 0 && !detail) {
    throw new UserError(`this provider holds no lease of a job or lease ${id}`, {
      code: 'not_found',
      suggestion: '`outpost jobs list` shows the jobs this provider leased; a job it never leased is its requester\'s to read',
    })
  }

  const {envelopes: archived, skipped} = readResultEnvelopes(options.stateDir, jobId)
  if (archived.length > 0) sources.push(`${archived.length} signed envelope(s) kept by this host's agent (${options.stateDir})`)
  if (skipped > 0) sources.push(`${skipped} kept envelope line(s) did not verify and were left out`)
  const newest = leases[0]
  const keptForNewest = newest ? archived.filter((envelope) => envelope.lease_id === newest.lease_id).at(-1) : undefined
  return {
    job_id: jobId,
    job: detail ?? newest?.job ?? null,
    leases,
    result: detail?.result ?? keptForNewest ?? archived.at(-1) ?? null,
    verdict: detail?.verdict ?? (newest ? verdictOfLease(newest) : null),
    archived_envelopes: archived,
    sources,
  }
}

export interface SlaReport extends SlaSummary {
  provider_pubkey: string
  days: number
}

/** GET /providers/{pk}/sla: public, for any provider. */
export async function slaReport(api: JobsApi, days: number): Promise<SlaReport> {
  return {provider_pubkey: api.providerPubkey, days, ...(await api.sla(days))}
}

/** The SLA figures as lines for a person. */
export function slaLines(report: SlaReport): string[] {
  const ms = (value: number | null) => (value === null ? '-' : `${Math.round(value)} ms`)
  return [
    `provider      ${report.provider_pubkey}`,
    `period        the last ${report.days} day(s)`,
    `leases        ${report.leases}: ${report.accepted} accepted, ${report.rejected} rejected, ${report.expired} expired, ${report.failed} failed`,
    `on time       ${report.on_time_percent === null ? '- (no results yet)' : `${report.on_time_percent.toFixed(1)}%`}`,
    `latency       p50 ${ms(report.latency_ms.p50)}, p95 ${ms(report.latency_ms.p95)} (lease to result)`,
    `traps         ${report.traps.passed} passed, ${report.traps.failed} failed`,
  ]
}
