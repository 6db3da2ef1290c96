import {RESPONSE_LIMITS, type ApiClient} from './client.js'
import {BlobRef, Bytes, JobDetail} from './job-schemas.js'
import type {JobKind} from './job-kinds.js'

/** A renter's side of PROTOCOL §12: programs, jobs, their results. */

export interface NewJob {
  kind: JobKind
  program_digest: string
  input_b64: string
  resources: {cpu_cores: number; memory_mb: number; gpu_count?: number; gpu_model?: string}
  reward: {mode: 'fixed'; amount: string} | {mode: 'auction'; max_fee: string}
  collateral: string
  deadline_seconds: number
  lease_seconds: number
  max_attempts: number
  requires_attestation?: boolean
  expect_public_signals?: string[]
  bid_seconds?: number
  reveal_seconds?: number
}

/** POST /programs: idempotent by digest. */
export function uploadProgram(client: ApiClient, bytes: Uint8Array): Promise<BlobRef> {
  return client.post('/programs', {schema: BlobRef, bytes})
}

/** POST /jobs: the client's key is the requester. */
export function createJob(client: ApiClient, job: NewJob): Promise<JobDetail> {
  return client.post('/jobs', {schema: JobDetail, body: job})
}

export function getJob(client: ApiClient, jobId: string): Promise<JobDetail> {
  return client.get(`/jobs/${encodeURIComponent(jobId)}`, {schema: JobDetail})
}

export function cancelJob(client: ApiClient, jobId: string): Promise<JobDetail> {
  return client.post(`/jobs/${encodeURIComponent(jobId)}/cancel`, {schema: JobDetail})
}

/** GET /jobs/{id}/output (reference devnet): the output bytes of the settled result. */
export function getJobOutput(client: ApiClient, jobId: string): Promise<Buffer> {
  return client.get(`/jobs/${encodeURIComponent(jobId)}/output`, {schema: Bytes, maxResponseBytes: RESPONSE_LIMITS.bytes})
}
