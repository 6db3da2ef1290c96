import {isIP} from 'node:net'
import {z} from 'zod'

import {AMOUNT_PATTERN} from '../core/decimal.js'
import {AGENT_PERMISSIONS} from '../core/delegation.js'
import type {FieldIssue} from './http-error.js'

/**
 * The server's own reading of PROTOCOL §§5–10 request bodies and queries. Deliberately separate from the client's
 * src/core/api/schemas.ts, so client and server can't agree on a mistake by sharing it. Objects are strict: an
 * unknown field is a 400 naming it, which catches a client spelling a field wrong.
 */

const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes * 2} lowercase hex characters`)
export const PublicKeyHex = hex(32)
const Sha256Hex = hex(32)
const unixMs = z.number().int('expected an integer (Unix ms)').nonnegative('expected Unix ms')
const count = z.number().int('expected an integer').nonnegative('expected a non-negative integer')
const positiveInt = z.number().int('expected a positive integer').positive('expected a positive integer')
const text = (max: number) => z.string().min(1, 'expected a non-empty string').max(max, `expected at most ${max} characters`)
const jsonObject = z.record(z.string(), z.unknown())
const measure = z.number().nonnegative('expected a non-negative number').finite()
const amount = z.string().regex(AMOUNT_PATTERN, 'expected a decimal string with at most 6 fractional digits, like "12.5"')
const positiveAmount = amount.refine((value) => /[1-9]/.test(value), 'expected an amount above zero')

export const ProviderBody = z.strictObject({
  name: text(128),
  contact_email: z.email('expected an email address'),
  website: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}).optional(),
  regions: z.array(text(64)).max(64).optional(),
})

export const ProviderStatusBody = z.strictObject({
  status: z.enum(['active', 'paused']),
  reason: z.string().max(512).optional(),
})

export const DelegationBody = z.strictObject({
  agent_pubkey: PublicKeyHex,
  permissions: z.array(z.enum(AGENT_PERMISSIONS)).min(1, 'expected at least one permission'),
  expires_at: unixMs.nullable(),
  // A newline would let one signed label read as two lines of the delegation message.
  label: z.string().max(128).regex(/^[^\n\r]*$/, 'expected a single line'),
  signature: hex(64),
})

export const HeartbeatBody = z.strictObject({
  version: text(64),
  provisioner_type: text(64),
  capabilities: z.array(text(64)).max(256),
  active_contracts: count,
  active_leases: count.optional(),
  capacity: jsonObject.optional(),
  free: jsonObject.optional(),
  status: z.enum(['active', 'draining']).optional(),
  /** Devnet addition: the agent's id, so its siblings learn from their heartbeats' answers whether it is alive. */
  agent_id: hex(16).optional(),
})

export const PRODUCT_TYPES = ['compute', 'gpu', 'dedicated', 'container'] as const

export const OfferingBody = z.strictObject({
  name: text(128),
  product_type: z.enum(PRODUCT_TYPES),
  cpu_cores: positiveInt,
  memory_mb: positiveInt,
  storage_gb: positiveInt,
  gpu_count: count.optional(),
  price_per_hour: amount,
  region: text(64).optional(),
  provisioner: text(64).optional(),
})

export const ContractBody = z.strictObject({
  offering_id: text(64),
  ssh_pubkey: text(16_384),
  duration_hours: positiveInt.max(8760, 'expected at most 8760 hours (a year)'),
  instance_config: jsonObject.optional(),
})

export const LockBody = z.strictObject({
  ttl_seconds: z.number().int('expected an integer').min(30, 'expected 30 to 3600 seconds').max(3600, 'expected 30 to 3600 seconds'),
})

export const InstanceBody = z.strictObject({
  external_id: text(256),
  ip_address: z.string().refine((value) => isIP(value) !== 0, 'expected an IPv4 or IPv6 address'),
  ipv6_address: z.string().refine((value) => isIP(value) === 6, 'expected an IPv6 address').nullish(),
  ssh_port: z.number().int().min(1, 'expected a port 1-65535').max(65_535, 'expected a port 1-65535'),
  sealed_credentials: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'expected base64').max(65_536).nullish(),
  details: jsonObject.nullish(),
})

export const ProvisioningBody = z.strictObject({
  status: z.enum(['provisioning', 'provisioned', 'provisioning_failed']),
  instance: InstanceBody.optional(),
  error: z.string().max(4096).optional(),
  retry_possible: z.boolean().optional(),
})

export const ReconcileBody = z.strictObject({
  instances: z
    .array(z.strictObject({external_id: text(256), contract_id: z.string().max(64).nullable()}))
    .max(10_000, 'expected at most 10000 instances'),
})

export const HealthBody = z.strictObject({
  checks: z
    .array(
      z.strictObject({
        contract_id: hex(16),
        status: z.enum(['healthy', 'unhealthy', 'unknown']),
        uptime_seconds: count.optional(),
        checked_at: unixMs,
        details: jsonObject.refine((details) => JSON.stringify(details).length <= 4096, 'expected at most 4096 characters of JSON').optional(),
      }),
    )
    .max(1000, 'expected at most 1000 checks'),
})

export const UsageRecordBody = z
  .strictObject({
    record_id: text(128),
    contract_id: hex(16),
    period_start: unixMs,
    period_end: unixMs,
    cpu_core_seconds: measure,
    memory_mb_seconds: measure,
    storage_gb_seconds: measure,
    gpu_seconds: measure,
    signer: PublicKeyHex,
    signature: hex(64),
  })
  .refine((record) => record.period_end >= record.period_start, {message: 'expected period_end at or after period_start', path: ['period_end']})

export const UsageBody = z.strictObject({records: z.array(UsageRecordBody).max(1000, 'expected at most 1000 records')})

export const StakeAmountBody = z.strictObject({amount: positiveAmount})

export const BenchmarkReportBody = z.strictObject({
  challenge_id: hex(16),
  machine: jsonObject,
  results: jsonObject,
  work_digest: Sha256Hex,
})

export const DISPUTE_TYPES = ['usage_disagreement', 'sla_violation', 'resource_mismatch', 'malicious_workload'] as const

export const DisputeBody = z.strictObject({
  type: z.enum(DISPUTE_TYPES),
  description: text(8192),
})

export const EvidenceBody = z.strictObject({
  provider_response: text(8192),
  evidence: z
    .array(
      z.strictObject({
        type: text(64),
        description: text(4096),
        hash: Sha256Hex,
        url: z.url().optional(),
        data: z.unknown().optional(),
      }),
    )
    .max(100),
})

/** §11: what a requester asks for; the closing time is relative, so the requester's clock doesn't matter. */
export const OrderBody = z.strictObject({
  requirements: z.strictObject({
    cpu_cores: positiveInt,
    memory_mb: positiveInt,
    storage_gb: positiveInt,
    gpu_count: count.optional(),
    gpu_model: text(64).optional(),
  }),
  max_price_per_hour: positiveAmount,
  duration_hours: positiveInt.max(8760, 'expected at most 8760 hours (a year)'),
  region: text(64).optional(),
  closes_in_seconds: z.number().int('expected an integer').min(1, 'expected 1 to 604800 seconds').max(604_800, 'expected 1 to 604800 seconds'),
  ssh_pubkey: text(16_384),
  instance_config: jsonObject.optional(),
})

export const BidBody = z.strictObject({price_per_hour: positiveAmount})

/** An empty body, for POSTs that take none: anything else is a mistake worth naming. */
export const EmptyBody = z.union([z.undefined(), z.strictObject({})])

const queryInt = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d{1,6}$/, `expected an integer ${min}-${max}`)
    .transform(Number)
    .pipe(z.number().min(min, `expected an integer ${min}-${max}`).max(max, `expected an integer ${min}-${max}`))

export const PendingQuery = z.strictObject({wait: queryInt(0, 30).optional()})
export const HealthSummaryQuery = z.strictObject({days: queryInt(1, 3650).optional()})
export const DisputesQuery = z.strictObject({status: z.enum(['open', 'responded', 'accepted']).optional()})
export const NoQuery = z.strictObject({})
/** §11 open orders, a page at a time: `cursor` is the `next_cursor` of the page before (opaque to clients). */
export const OrdersQuery = z.strictObject({
  status: z.enum(['open']).optional(),
  wait: queryInt(0, 30).optional(),
  cursor: z
    .string()
    .regex(/^\d{1,15}$/, 'expected the next_cursor of an earlier page')
    .transform(Number)
    .optional(),
  limit: queryInt(1, 500).optional(),
})

/** Zod issues as §4 details: each names its field by dotted path (`records.3.signature`). */
export function fieldIssues(error: z.ZodError): FieldIssue[] {
  return error.issues.map((issue) => {
    const field = issue.path.map(String).join('.')
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.join(', ')
      return {field: field ? `${field}.${keys}` : keys, message: 'unknown field'}
    }
    return {field: field || 'body', message: issue.message}
  })
}
