import {z} from 'zod'

import type {ApiClient} from './client.js'
import {AttestationKey, AttestationKeyList} from './job-schemas.js'

const NoContent = z.unknown()

/** PROTOCOL §14: a provider's attestation keys. Enrolling and removing take the main key; the list is public. */

export interface AttestationKeyEnrollment {
  agent_pubkey: string
  type: 'tpm2'
  ak_public_pem: string
  ek_certificate_pem?: string
  /** Like `sha256:0,1,2,3,4,5,6,7`. */
  pcr_selection: string
  /** The PCR digest the quotes must carry (pinned boot state), lowercase hex. */
  expected_pcr_digest?: string
}

export function enrollAttestationKey(client: ApiClient, providerPubkey: string, enrollment: AttestationKeyEnrollment): Promise<AttestationKey> {
  return client.post(`/providers/${providerPubkey}/attestation-keys`, {schema: AttestationKey, body: enrollment})
}

export async function listAttestationKeys(client: ApiClient, providerPubkey: string): Promise<AttestationKey[]> {
  const {keys} = await client.get(`/providers/${providerPubkey}/attestation-keys`, {schema: AttestationKeyList, public: true})
  return keys
}

export async function removeAttestationKey(client: ApiClient, providerPubkey: string, agentPubkey: string): Promise<void> {
  await client.delete(`/providers/${providerPubkey}/attestation-keys/${agentPubkey}`, {schema: NoContent})
}
