import {z} from 'zod'

import type {ApiClient} from './client.js'
import {Amount, Contract, ContractId, PublicKeyHex, UnixMs} from './schemas.js'

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

const contractPath = (contractId: string) => `/contracts/${encodeURIComponent(contractId)}`

export function listOfferings(client: ApiClient): Promise<{offerings: Offering[]}> {
  return client.get('/offerings', {schema: z.object({offerings: z.array(Offering)}), public: true})
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
