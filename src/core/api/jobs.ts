import type {SignedResultEnvelope} from '../signing.js'
import {RESPONSE_LIMITS, type ApiClient} from './client.js'
import {Auction, BlobRef, Bytes, Commitment, Job, JobList, Lease, LeaseList, Reveal, SlaSummary, Verdict, type LeaseStatus} from './job-schemas.js'
import {MAX_WAIT_SECONDS, type CallOptions} from './provider.js'

/** The agent's routes of PROTOCOL §§12–13 for one provider: job market and sealed-bid auctions. */
export class JobsApi {
  readonly providerPubkey: string
  private readonly client: ApiClient

  constructor(client: ApiClient, providerPubkey: string) {
    this.client = client
    this.providerPubkey = providerPubkey
  }

  private path(suffix: string): string {
    return `/providers/${this.providerPubkey}${suffix}`
  }

  /** Open jobs this provider may lease. With waitSeconds > 0 the server may hold the request until one opens. */
  async openJobs(waitSeconds: number, options: CallOptions = {}): Promise<Job[]> {
    const wait = Math.max(0, Math.min(MAX_WAIT_SECONDS, Math.floor(waitSeconds)))
    const {jobs} = await this.client.get(this.path('/jobs/open'), {
      schema: JobList,
      query: wait > 0 ? {wait} : undefined,
      maxResponseBytes: RESPONSE_LIMITS.list,
      // The server holds a long poll on purpose for up to `wait` seconds: that is not a timeout.
      extraTimeoutMs: wait * 1000,
      ...options,
    })
    return jobs
  }

  /** The job's input bytes (check them against `job.input.digest` before use). */
  input(jobId: string, options: CallOptions = {}): Promise<Buffer> {
    return this.client.get(this.path(`/jobs/${jobId}/input`), {schema: Bytes, maxResponseBytes: RESPONSE_LIMITS.bytes, ...options})
  }

  /** A program by digest (public; check the bytes against the digest before use). */
  program(digest: string, options: CallOptions = {}): Promise<Buffer> {
    return this.client.get(`/programs/${digest}`, {schema: Bytes, public: true, maxResponseBytes: RESPONSE_LIMITS.bytes, ...options})
  }

  lease(jobId: string, options: CallOptions = {}): Promise<Lease> {
    return this.client.post(this.path(`/jobs/${jobId}/lease`), {schema: Lease, body: {}, ...options})
  }

  /** Renews until min(now + lease_seconds, deadline); 410 `lease_expired` once it has expired. */
  renew(leaseId: string, options: CallOptions = {}): Promise<Lease> {
    return this.client.put(this.path(`/leases/${leaseId}`), {schema: Lease, ...options})
  }

  /** Uploads an output over 512 KiB before the envelope that names it by digest. */
  uploadOutput(leaseId: string, bytes: Uint8Array, options: CallOptions = {}): Promise<BlobRef> {
    return this.client.put(this.path(`/leases/${leaseId}/output`), {schema: BlobRef, bytes, ...options})
  }

  /** Posting the same envelope again returns the same verdict, so a retry after a lost answer is safe. */
  submitResult(leaseId: string, envelope: SignedResultEnvelope, options: CallOptions = {}): Promise<Verdict> {
    return this.client.post(this.path(`/leases/${leaseId}/result`), {schema: Verdict, body: envelope, ...options})
  }

  fail(leaseId: string, failure: {reason: string; retryable: boolean}, options: CallOptions = {}): Promise<Lease> {
    return this.client.post(this.path(`/leases/${leaseId}/fail`), {schema: Lease, body: failure, ...options})
  }

  async leases(status?: LeaseStatus, options: CallOptions = {}): Promise<Lease[]> {
    const {leases} = await this.client.get(this.path('/leases'), {schema: LeaseList, query: {status}, maxResponseBytes: RESPONSE_LIMITS.list, ...options})
    return leases
  }

  sla(days?: number, options: CallOptions = {}): Promise<SlaSummary> {
    return this.client.get(this.path('/sla'), {schema: SlaSummary, query: {days}, public: true, ...options})
  }

  /** §13: a sealed bid (see core/auction.ts for the commitment); replaces this provider's earlier one. */
  commit(jobId: string, commitment: string, options: CallOptions = {}): Promise<Commitment> {
    return this.client.post(this.path(`/jobs/${jobId}/commitments`), {schema: Commitment, body: {commitment}, ...options})
  }

  reveal(jobId: string, fee: string, salt: string, options: CallOptions = {}): Promise<Reveal> {
    return this.client.post(this.path(`/jobs/${jobId}/reveals`), {schema: Reveal, body: {fee, salt}, ...options})
  }

  auction(jobId: string, options: CallOptions = {}): Promise<Auction> {
    return getAuction(this.client, jobId, options)
  }
}

export function getAuction(client: ApiClient, jobId: string, options: CallOptions = {}): Promise<Auction> {
  return client.get(`/jobs/${jobId}/auction`, {schema: Auction, public: true, ...options})
}
