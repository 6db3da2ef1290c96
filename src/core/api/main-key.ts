import {z} from 'zod'

import type {DelegationTerms} from '../delegation.js'
import {RESPONSE_LIMITS, type ApiClient} from './client.js'
import {Amount, PublicKeyHex, UnixMs} from './schemas.js'

/** PROTOCOL §§5–6: the routes a provider main key signs (and the public reads next to them). */

export const Provider = z.looseObject({
  pubkey: PublicKeyHex,
  name: z.string(),
  contact_email: z.string(),
  website: z.string().nullish(),
  regions: z.array(z.string()).default([]),
  status: z.enum(['active', 'paused']).optional(),
})
export type Provider = z.infer<typeof Provider>

export const Delegation = z.object({
  agent_pubkey: PublicKeyHex,
  permissions: z.array(z.string()),
  expires_at: UnixMs.nullable(),
  label: z.string(),
  created_at: UnixMs,
  revoked_at: UnixMs.nullable(),
  /** Not in PROTOCOL §5's list: the reference marketplace's last heartbeat signed by the key; absent elsewhere. */
  last_seen_at: UnixMs.nullish(),
})
export type Delegation = z.infer<typeof Delegation>
export const DelegationList = z.object({delegations: z.array(Delegation)})

export const PublishedOffering = z.looseObject({
  offering_id: z.string().min(1),
  provider_pubkey: PublicKeyHex.optional(),
  name: z.string(),
  product_type: z.string(),
  cpu_cores: z.number(),
  memory_mb: z.number(),
  storage_gb: z.number(),
  gpu_count: z.number().nullish(),
  price_per_hour: Amount,
  region: z.string().nullish(),
  provisioner: z.string().nullish(),
})
export type PublishedOffering = z.infer<typeof PublishedOffering>

const Anything = z.unknown()

export interface ProviderProfileBody {
  name: string
  contact_email: string
  website?: string
  regions?: string[]
}

export interface OfferingBody {
  name: string
  product_type: string
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  gpu_count?: number
  price_per_hour: string
  region?: string
  provisioner?: string
}

export function getProvider(client: ApiClient, pubkey: string): Promise<Provider> {
  return client.get(`/providers/${pubkey}`, {schema: Provider, public: true})
}

export function registerProvider(client: ApiClient, body: ProviderProfileBody): Promise<Provider> {
  return client.post('/providers', {schema: Provider, body})
}

export async function listDelegations(client: ApiClient, providerPubkey: string): Promise<Delegation[]> {
  const answer = await client.get(`/providers/${providerPubkey}/agent-delegations`, {schema: DelegationList, maxResponseBytes: RESPONSE_LIMITS.list})
  return answer.delegations
}

/** Submits the delegation of these terms with the main key's signature over their text (PROTOCOL §3). */
export async function createDelegation(client: ApiClient, terms: DelegationTerms, signature: string): Promise<void> {
  const body = {agent_pubkey: terms.agentPubkey, permissions: [...terms.permissions], expires_at: terms.expiresAt, label: terms.label, signature}
  await client.post(`/providers/${terms.providerPubkey}/agent-delegations`, {schema: Anything, body})
}

export async function revokeDelegation(client: ApiClient, providerPubkey: string, agentPubkey: string): Promise<void> {
  await client.delete(`/providers/${providerPubkey}/agent-delegations/${agentPubkey}`, {schema: Anything})
}

export async function listOfferings(client: ApiClient): Promise<PublishedOffering[]> {
  const answer = await client.get('/offerings', {schema: z.object({offerings: z.array(PublishedOffering)}), public: true, maxResponseBytes: RESPONSE_LIMITS.list})
  return answer.offerings
}

export function publishOffering(client: ApiClient, providerPubkey: string, body: OfferingBody): Promise<PublishedOffering> {
  return client.post(`/providers/${providerPubkey}/offerings`, {schema: PublishedOffering, body})
}
