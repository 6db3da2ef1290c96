import {z} from 'zod'

import {RESPONSE_LIMITS, type ApiClient} from './client.js'
import {ContractId, hexString, PublicKeyHex, UnixMs} from './schemas.js'

/** PROTOCOL §10, the provider's side: its disputes, their evidence, and accepting a claim (main key only). */

export const DISPUTE_STATUSES = ['open', 'responded', 'accepted'] as const

export const EvidenceItem = z.object({
  type: z.string().min(1).max(64),
  description: z.string().min(1).max(4096),
  hash: hexString(32),
  url: z.url().optional(),
  data: z.unknown().optional(),
})
export type EvidenceItem = z.infer<typeof EvidenceItem>

export const ProviderDispute = z.object({
  dispute_id: z.string().min(1),
  contract_id: ContractId,
  provider_pubkey: PublicKeyHex.optional(),
  requester_pubkey: PublicKeyHex.optional(),
  type: z.string().min(1),
  description: z.string(),
  /** §10 names `open` and `accepted`; a marketplace may have more (the devnet: `responded`). */
  status: z.string().min(1),
  provider_response: z.string().nullish(),
  evidence: z.array(EvidenceItem).default([]),
  created_at: UnixMs.optional(),
  updated_at: UnixMs.optional(),
})
export type ProviderDispute = z.infer<typeof ProviderDispute>

export interface EvidenceBody {
  provider_response: string
  evidence: EvidenceItem[]
}

const disputePath = (disputeId: string) => `/disputes/${encodeURIComponent(disputeId)}`

export async function listDisputes(client: ApiClient, providerPubkey: string, status?: string): Promise<ProviderDispute[]> {
  const answer = await client.get(`/providers/${providerPubkey}/disputes`, {
    schema: z.object({disputes: z.array(ProviderDispute)}),
    query: {status},
    maxResponseBytes: RESPONSE_LIMITS.list,
  })
  return answer.disputes
}

export function getDispute(client: ApiClient, disputeId: string): Promise<ProviderDispute> {
  return client.get(disputePath(disputeId), {schema: ProviderDispute})
}

export function submitEvidence(client: ApiClient, disputeId: string, body: EvidenceBody): Promise<ProviderDispute> {
  return client.post(`${disputePath(disputeId)}/evidence`, {schema: ProviderDispute, body})
}

export function acceptDispute(client: ApiClient, disputeId: string): Promise<ProviderDispute> {
  return client.post(`${disputePath(disputeId)}/accept`, {schema: ProviderDispute})
}
