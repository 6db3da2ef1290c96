import {z} from 'zod'

import {RESPONSE_LIMITS, type ApiClient} from './client.js'
import {Amount, Contract, ContractId, OrderRequirements, PublicKeyHex, UnixMs} from './schemas.js'

/**
 * A renter's (requester's) side of PROTOCOL §§6 and 10, parsed on the client side. Fields the protocol doesn't
 * name are optional, so these also read a marketplace that sends only what §6 lists.
 */

export const RenterContract = Contract.extend({
  provider_pubkey: PublicKeyHex.optional(),
  duration_hours: z.number().int().positive().optional(),
  ends_at: UnixMs.optional(),
  price_per_hour: Amount.optional(),
  refunded: z.boolean().optional(),
  last_error: z.string().nullish(),
})
export type RenterContract = z.infer<typeof RenterContract>

export const Offering = z.object({
  offering_id: z.string().min(1),
  provider_pubkey: PublicKeyHex,
  name: z.string(),
  product_type: z.enum(['compute', 'gpu', 'dedicated', 'container']),
  cpu_cores: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  storage_gb: z.number().int().positive(),
  gpu_count: z.number().int().nonnegative().optional(),
  price_per_hour: Amount,
  region: z.string().nullish(),
  available: z.boolean().optional(),
})
export type Offering = z.infer<typeof Offering>

export const DISPUTE_TYPES = ['usage_disagreement', 'sla_violation', 'resource_mismatch', 'malicious_workload'] as const
export type DisputeType = (typeof DISPUTE_TYPES)[number]

export const Dispute = z.object({
  dispute_id: z.string().min(1),
  contract_id: ContractId,
  type: z.enum(DISPUTE_TYPES),
  description: z.string(),
  status: z.string(),
  provider_response: z.string().nullish(),
  evidence: z.array(z.record(z.string(), z.unknown())).optional(),
  created_at: UnixMs.optional(),
})
export type Dispute = z.infer<typeof Dispute>

export interface NewContract {
  offering_id: string
  ssh_pubkey: string
  duration_hours: number
  instance_config?: Record<string, unknown>
}

/** PROTOCOL §11 (devnet additions): an order as its requester sees it. */
export const RenterOrder = z.object({
  order_id: ContractId,
  requirements: OrderRequirements,
  max_price_per_hour: Amount,
  duration_hours: z.number().int().positive(),
  region: z.string().optional(),
  closes_at: UnixMs,
  status: z.enum(['open', 'awarded', 'unfilled']),
  closed_at: UnixMs.nullish(),
  bids: z.array(z.object({provider_pubkey: PublicKeyHex, price_per_hour: Amount, placed_at: UnixMs, status: z.string()})).optional(),
  winning_bid_id: z.string().nullish(),
  contract_id: ContractId.nullish(),
})
export type RenterOrder = z.infer<typeof RenterOrder>

export interface NewOrder {
  requirements: {cpu_cores: number; memory_mb: number; storage_gb: number; gpu_count?: number; gpu_model?: string}
  max_price_per_hour: string
  duration_hours: number
  region?: string
  closes_in_seconds: number
  ssh_pubkey: string
  instance_config?: Record<string, unknown>
}

/** POST /orders: the client's key is the requester, and the one the won contract's credentials are sealed to. */
export function createOrder(client: ApiClient, order: NewOrder): Promise<RenterOrder> {
  return client.post('/orders', {schema: RenterOrder, body: order})
}

export function getOrder(client: ApiClient, orderId: string): Promise<RenterOrder> {
  return client.get(`/orders/${encodeURIComponent(orderId)}`, {schema: RenterOrder})
}

const contractPath = (contractId: string) => `/contracts/${encodeURIComponent(contractId)}`

export function listOfferings(client: ApiClient): Promise<{offerings: Offering[]}> {
  return client.get('/offerings', {schema: z.object({offerings: z.array(Offering)}), public: true, maxResponseBytes: RESPONSE_LIMITS.list})
}

/** POST /contracts: the client's key is the requester, and the one sealed credentials are opened with. */
export function createContract(client: ApiClient, contract: NewContract): Promise<RenterContract> {
  return client.post('/contracts', {schema: RenterContract, body: contract})
}

export function getContract(client: ApiClient, contractId: string): Promise<RenterContract> {
  return client.get(contractPath(contractId), {schema: RenterContract})
}

export function cancelContract(client: ApiClient, contractId: string): Promise<RenterContract> {
  return client.post(`${contractPath(contractId)}/cancel`, {schema: RenterContract})
}

export function openDispute(client: ApiClient, contractId: string, dispute: {type: DisputeType; description: string}): Promise<Dispute> {
  return client.post(`${contractPath(contractId)}/disputes`, {schema: Dispute, body: dispute})
}
