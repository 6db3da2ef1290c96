import {z} from 'zod'

import {JOB_KINDS} from './job-kinds.js'
import {Amount, hexString, PublicKeyHex, UnixMs} from './schemas.js'

/**
 * What the marketplace sends for PROTOCOL §§12–14, parsed on the client side (the reference server has its own
 * schemas in src/marketplace). Fields the protocol doesn't name are optional, so these read any server that sends
 * what the protocol lists.
 */

export const Digest = hexString(32)
export const JobId = hexString(16)
export const LeaseId = hexString(16)
const count = z.number().int().nonnegative()

/** §12: bytes stored by digest (a program, an uploaded output). */
export const BlobRef = z.object({digest: Digest, size_bytes: count})
export type BlobRef = z.infer<typeof BlobRef>

/** An `application/octet-stream` answer, as ApiClient hands it over. */
export const Bytes = z.custom<Buffer>((value) => Buffer.isBuffer(value), 'expected bytes (application/octet-stream)')

export const JOB_STATUSES = ['open', 'leased', 'completed', 'failed', 'cancelled'] as const

/** §12: a job as an agent sees it. */
export const Job = z.object({
  job_id: JobId,
  kind: z.enum(JOB_KINDS),
  program: BlobRef,
  input: BlobRef,
  resources: z.object({
    cpu_cores: z.number().int().positive(),
    memory_mb: z.number().int().positive(),
    gpu_count: count.optional(),
    gpu_model: z.string().min(1).optional(),
  }),
  reward: z.object({mode: z.enum(['fixed', 'auction']), amount: Amount.optional(), max_fee: Amount.optional()}),
  collateral: Amount,
  deadline: UnixMs,
  lease_seconds: z.number().int().positive(),
  attempts_left: count,
  requires_attestation: z.boolean(),
  bid_closes_at: UnixMs.optional(),
  reveal_closes_at: UnixMs.optional(),
  created_at: UnixMs,
  status: z.enum(JOB_STATUSES),
})
export type Job = z.infer<typeof Job>
export const JobList = z.object({jobs: z.array(Job)})

export const LEASE_STATUSES = ['active', 'submitted', 'accepted', 'rejected', 'expired', 'failed'] as const
export type LeaseStatus = (typeof LEASE_STATUSES)[number]

/** §12: a lease; the reference devnet also sends the job, so a restarted agent needs nothing else to take it up. */
export const Lease = z.object({
  lease_id: LeaseId,
  job_id: JobId,
  agent_pubkey: PublicKeyHex,
  status: z.enum(LEASE_STATUSES),
  leased_at: UnixMs,
  expires_at: UnixMs,
  deadline: UnixMs,
  collateral: Amount.optional(),
  job: Job.optional(),
  reason: z.string().optional(),
  reward: Amount.optional(),
  /** Devnet addition: the collateral a rejected or expired lease lost. */
  forfeited: Amount.optional(),
})
export type Lease = z.infer<typeof Lease>
export const LeaseList = z.object({leases: z.array(Lease)})

/** §12: the answer to a result. */
export const Verdict = z.object({
  verdict: z.enum(['accepted', 'rejected']),
  reason: z.string().optional(),
  reward: Amount.optional(),
  /** Devnet addition: what exactly failed. */
  detail: z.string().optional(),
})
export type Verdict = z.infer<typeof Verdict>

export const SlaSummary = z.object({
  leases: count,
  accepted: count,
  rejected: count,
  expired: count,
  failed: count,
  on_time_percent: z.number().min(0).max(100).nullable(),
  latency_ms: z.object({p50: z.number().nonnegative().nullable(), p95: z.number().nonnegative().nullable()}),
  traps: z.object({passed: count, failed: count}),
})
export type SlaSummary = z.infer<typeof SlaSummary>

/** §12: a signed result envelope, as the renter reads it back. */
export const ResultEnvelope = z.object({
  job_id: JobId,
  lease_id: LeaseId,
  program_digest: Digest,
  input_digest: Digest,
  output: z.object({digest: Digest, size_bytes: count, data_b64: z.string().optional()}),
  started_at: UnixMs,
  finished_at: UnixMs,
  attestation: z.object({type: z.literal('tpm2-quote'), quote_b64: z.string(), signature_b64: z.string(), pcr_digest: z.string()}).optional(),
  signer: PublicKeyHex,
  signature: hexString(64),
})
export type ResultEnvelope = z.infer<typeof ResultEnvelope>

/** GET /jobs/{id}: the job, with its result and verdict once settled. */
export const JobDetail = Job.extend({
  requester_pubkey: PublicKeyHex.optional(),
  max_attempts: z.number().int().positive().optional(),
  status_reason: z.string().nullish(),
  winner: PublicKeyHex.optional(),
  result: ResultEnvelope.nullish(),
  verdict: Verdict.nullish(),
})
export type JobDetail = z.infer<typeof JobDetail>

/** §13 */
export const Commitment = z.object({job_id: JobId, commitment: Digest, committed_at: UnixMs.optional()})
export type Commitment = z.infer<typeof Commitment>
export const Reveal = z.object({job_id: JobId, fee: Amount, revealed_at: UnixMs.optional()})
export type Reveal = z.infer<typeof Reveal>
export const Auction = z.object({
  phase: z.enum(['bidding', 'revealing', 'closed']),
  bids: z.array(z.object({provider_pubkey: PublicKeyHex}).loose()),
  reveals: z.array(z.object({provider_pubkey: PublicKeyHex, fee: Amount.optional()}).loose()),
  winner: PublicKeyHex.optional(),
  clearing_fee: Amount.optional(),
})
export type Auction = z.infer<typeof Auction>

/** §14 */
export const AttestationKey = z.object({
  agent_pubkey: PublicKeyHex,
  type: z.literal('tpm2'),
  ak_public_pem: z.string().min(1),
  ek_certificate_pem: z.string().nullish(),
  pcr_selection: z.string().min(1),
  expected_pcr_digest: z.string().nullish(),
  created_at: UnixMs.optional(),
})
export type AttestationKey = z.infer<typeof AttestationKey>
export const AttestationKeyList = z.object({keys: z.array(AttestationKey)})
