import {z} from 'zod'

import {AMOUNT_PATTERN} from '../core/decimal.js'
import {PublicKeyHex} from './schemas.js'

/**
 * The server's own reading of PROTOCOL §§12–14 bodies and queries (apart from the client's, as schemas.ts is).
 * Objects are strict: an unknown field is a 400 naming it.
 */

export const JOB_KINDS = ['zk_proof', 'quantum_circuit', 'container'] as const
export type JobKind = (typeof JOB_KINDS)[number]

const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes * 2} lowercase hex characters`)
export const Sha256Hex = hex(32)
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64')
const unixMs = z.number().int('expected an integer (Unix ms)').nonnegative('expected Unix ms')
const count = z.number().int('expected an integer').nonnegative('expected a non-negative integer')
const positiveInt = z.number().int('expected a positive integer').positive('expected a positive integer')
const amount = z.string().regex(AMOUNT_PATTERN, 'expected a decimal string with at most 6 fractional digits, like "12.5"')
const positiveAmount = amount.refine((value) => /[1-9]/.test(value), 'expected an amount above zero')
const seconds = (min: number, max: number) =>
  z.number().int('expected an integer').min(min, `expected ${min} to ${max} seconds`).max(max, `expected ${min} to ${max} seconds`)
const decimalSignal = z.string().regex(/^\d{1,100}$/, 'expected a decimal field element, as snarkjs writes public signals')

export const MAX_ATTEMPTS = 10
/** A job's deadline is at most a week away; a lease at most an hour before it is renewed. */
export const MAX_DEADLINE_SECONDS = 7 * 24 * 3600
export const MAX_LEASE_SECONDS = 3600

export const JobResources = z.strictObject({
  cpu_cores: positiveInt.max(1024),
  memory_mb: positiveInt,
  gpu_count: count.max(64).optional(),
  gpu_model: z.string().min(1).max(64).optional(),
})

export const JobReward = z.discriminatedUnion('mode', [
  z.strictObject({mode: z.literal('fixed'), amount: positiveAmount}),
  z.strictObject({mode: z.literal('auction'), max_fee: positiveAmount}),
])

export const JobBody = z
  .strictObject({
    kind: z.enum(JOB_KINDS),
    program_digest: Sha256Hex,
    input_b64: base64,
    resources: JobResources,
    reward: JobReward,
    collateral: amount,
    deadline_seconds: seconds(1, MAX_DEADLINE_SECONDS),
    lease_seconds: seconds(1, MAX_LEASE_SECONDS),
    max_attempts: positiveInt.max(MAX_ATTEMPTS, `expected at most ${MAX_ATTEMPTS} attempts`),
    requires_attestation: z.boolean().optional(),
    expect_public_signals: z.array(decimalSignal).max(1000).optional(),
    bid_seconds: seconds(1, 24 * 3600).optional(),
    reveal_seconds: seconds(1, 24 * 3600).optional(),
  })
  .superRefine((body, context) => {
    const auction = body.reward.mode === 'auction'
    for (const field of ['bid_seconds', 'reveal_seconds'] as const) {
      if (!auction && body[field] !== undefined) context.addIssue({code: 'custom', path: [field], message: 'only for reward.mode "auction"'})
    }
    if (body.expect_public_signals !== undefined && body.kind !== 'zk_proof') {
      context.addIssue({code: 'custom', path: ['expect_public_signals'], message: 'only for kind zk_proof'})
    }
  })
export type JobBody = z.infer<typeof JobBody>

export const FailBody = z.strictObject({
  reason: z.string().min(1, 'expected a non-empty string').max(4096),
  retryable: z.boolean(),
})

export const ResultOutputBody = z.strictObject({
  digest: Sha256Hex,
  size_bytes: count,
  data_b64: base64.optional(),
})

export const AttestationBody = z.strictObject({
  type: z.literal('tpm2-quote'),
  quote_b64: base64.min(1).max(8192),
  signature_b64: base64.min(1).max(8192),
  pcr_digest: z.string().regex(/^(?:[0-9a-f]{2}){20,64}$/, 'expected the quote\'s PCR digest, lowercase hex'),
})

export const ResultEnvelopeBody = z
  .strictObject({
    job_id: hex(16),
    lease_id: hex(16),
    program_digest: Sha256Hex,
    input_digest: Sha256Hex,
    output: ResultOutputBody,
    started_at: unixMs,
    finished_at: unixMs,
    attestation: AttestationBody.optional(),
    signer: PublicKeyHex,
    signature: hex(64),
  })
  .refine((envelope) => envelope.finished_at >= envelope.started_at, {message: 'expected finished_at at or after started_at', path: ['finished_at']})
export type ResultEnvelopeBody = z.infer<typeof ResultEnvelopeBody>

export const CommitmentBody = z.strictObject({commitment: Sha256Hex})

export const RevealBody = z.strictObject({
  fee: positiveAmount,
  salt: hex(32),
})

export const AttestationKeyBody = z.strictObject({
  agent_pubkey: PublicKeyHex,
  type: z.literal('tpm2'),
  ak_public_pem: z.string().min(1).max(8192),
  ek_certificate_pem: z.string().min(1).max(16_384).optional(),
  pcr_selection: z.string().min(1).max(256),
  expected_pcr_digest: z.string().regex(/^(?:[0-9a-f]{2}){20,64}$/, 'expected a PCR digest, lowercase hex').optional(),
})

const queryInt = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,6}$/, `expected an integer ${min}-${max}`)
    .transform(Number)
    .pipe(z.number().min(min, `expected an integer ${min}-${max}`).max(max, `expected an integer ${min}-${max}`))

export const OpenJobsQuery = z.strictObject({wait: queryInt(0, 30).optional()})
export const LEASE_STATUSES = ['active', 'submitted', 'accepted', 'rejected', 'expired', 'failed'] as const
export type LeaseStatus = (typeof LEASE_STATUSES)[number]
export const LeasesQuery = z.strictObject({status: z.enum(LEASE_STATUSES).optional()})
export const SlaQuery = z.strictObject({days: queryInt(1, 3650).optional()})
