import {z} from 'zod'

import {AMOUNT_PATTERN} from '../decimal.js'

/**
 * What the marketplace sends, as PROTOCOL.md describes it, parsed on the client side before use. The reference
 * server validates its own input with its own schemas (src/marketplace), so a mistake here can't hide there.
 */

export const hexString = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes * 2} lowercase hex characters`)
export const PublicKeyHex = hexString(32)
export const ContractId = hexString(16)
export const Amount = z.string().regex(AMOUNT_PATTERN, 'expected a decimal amount string')
export const UnixMs = z.number().int().nonnegative()

export const ApiErrorBody = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.array(z.unknown()).optional(),
  }),
})

export const CONTRACT_STATUSES = [
  'accepted',
  'provisioning',
  'provisioned',
  'active',
  'completed',
  'provisioning_failed',
  'cancelled',
  'expired',
  'terminated',
] as const
export type ContractStatus = (typeof CONTRACT_STATUSES)[number]

export const Instance = z.object({
  external_id: z.string().min(1),
  ip_address: z.string().min(1),
  ipv6_address: z.string().nullish(),
  ssh_port: z.number().int().min(1).max(65_535),
  sealed_credentials: z.string().nullish(),
  details: z.record(z.string(), z.unknown()).nullish(),
})
export type Instance = z.infer<typeof Instance>

/**
 * PROTOCOL §6: the renter's own signed `POST /contracts` (or `POST /orders`), kept by the marketplace exactly as it
 * arrived: the Host it was sent to, its §2 timestamp, nonce and signature, and the body bytes. The agent verifies it
 * against `requester_pubkey` (core/contract-request.ts) before sealing anything to that key.
 */
export const SignedRequest = z.object({
  host: z.string().min(1).max(255),
  timestamp: UnixMs,
  nonce: hexString(16),
  // §1 caps the body at 1 MiB: 4/3 of that in base64.
  body_b64: z.string().max(1_398_104).regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64'),
  signature: hexString(64),
})
export type SignedRequest = z.infer<typeof SignedRequest>

/** A contract as sent to an agent (PROTOCOL §6); the renter's view carries the same fields and more. */
export const Contract = z.object({
  contract_id: ContractId,
  offering_id: z.string().min(1),
  product_type: z.enum(['compute', 'gpu', 'dedicated', 'container']),
  cpu_cores: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  storage_gb: z.number().int().positive(),
  gpu_count: z.number().int().nonnegative(),
  requester_pubkey: PublicKeyHex,
  ssh_pubkey: z.string(),
  instance_config: z.record(z.string(), z.unknown()).nullish(),
  created_at: UnixMs,
  status: z.enum(CONTRACT_STATUSES),
  termination_pending: z.boolean().optional(),
  instance: Instance.nullish(),
  /** Absent or null from a marketplace that keeps none: verifyContractRequest then refuses the contract. */
  request: SignedRequest.nullish(),
})
export type Contract = z.infer<typeof Contract>

export const ContractList = z.object({contracts: z.array(Contract)})

/**
 * §7 pending-provision. `tier_limited` (a devnet addition, see the README's protocol notes): `accepted` contracts held
 * back because the provider's stake tier has no room for them.
 */
export const PendingContracts = ContractList.extend({tier_limited: z.number().int().nonnegative().optional()})

/** PROTOCOL §5: the interval a heartbeat answer may ask for; a number outside it is brought to the nearest end. */
export const HEARTBEAT_SECONDS_RANGE = {min: 10, max: 3600} as const

/** PROTOCOL §5: the heartbeat's answer. `next_heartbeat_seconds` becomes a timer, so it is bounded here. */
export const HeartbeatResponse = z.object({
  acknowledged: z.literal(true),
  /** §5 bounds it 10–3600; the agent judges it, and keeps its configured interval when it is missing or out of bounds. */
  next_heartbeat_seconds: z.number().optional(),
  /**
   * The provider's agents that sent an `agent_id`, with the age of each one's last heartbeat (a devnet addition to §5,
   * see the README's protocol notes): how an agent learns that a sibling is dead.
   */
  agents: z
    .array(z.object({agent_id: hexString(16), last_heartbeat_age_ms: z.number().int().nonnegative()}))
    .max(10_000)
    .optional(),
})
export type HeartbeatResponse = z.infer<typeof HeartbeatResponse>

/** PROTOCOL §7: a contract lock. */
export const LockResponse = z.object({acquired: z.literal(true), expires_at: UnixMs})
export type LockResponse = z.infer<typeof LockResponse>

/**
 * PROTOCOL §7 names the reconcile answer's lists but not their items; a server may echo the `{external_id, contract_id}`
 * items it was sent or list bare external ids. Both are read into the echoed shape.
 */
export const ReconciledInstance = z.union([
  z.string().min(1).transform((external_id) => ({external_id, contract_id: undefined as string | undefined})),
  z.object({external_id: z.string().min(1), contract_id: z.string().nullish().transform((id) => id ?? undefined)}),
])
export const ReconcileResponse = z.object({
  keep: z.array(ReconciledInstance),
  terminate: z.array(ReconciledInstance),
  unknown: z.array(ReconciledInstance),
})
export type ReconcileResponse = z.infer<typeof ReconcileResponse>

export const HealthResponse = z.object({accepted: z.number().int().nonnegative()})
export const UsageResponse = z.object({accepted: z.number().int().nonnegative(), duplicates: z.number().int().nonnegative()})
export type UsageResponse = z.infer<typeof UsageResponse>

/** A signed usage record (PROTOCOL §7) as the agent keeps it on disk and sends it. */
export const SignedUsageRecordSchema = z.object({
  record_id: z.string().min(1),
  contract_id: z.string().min(1),
  period_start: z.number().int(),
  period_end: z.number().int(),
  cpu_core_seconds: z.number(),
  memory_mb_seconds: z.number(),
  storage_gb_seconds: z.number(),
  gpu_seconds: z.number(),
  signer: z.string(),
  signature: z.string(),
})

/** PROTOCOL §11: what an order asks for. */
export const OrderRequirements = z.object({
  cpu_cores: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  storage_gb: z.number().int().positive(),
  gpu_count: z.number().int().nonnegative(),
  gpu_model: z.string().min(1).optional(),
})
