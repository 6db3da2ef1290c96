import {putProviderStatus, type ProviderStatus} from '../core/api/provider-status.js'
import {mainKeySession} from '../core/api/session.js'
import type {LoadedConfig} from '../core/config/load.js'
import type {KeyPair} from '../core/signing.js'

export interface ProviderStatusResult {
  provider_pubkey: string
  status: ProviderStatus
  reason: string | null
}

/** `outpost provider pause|resume`: PROTOCOL §5 `PUT /status`, signed with the main key. */
export async function setProviderStatus(options: {loaded: LoadedConfig; mainKey: KeyPair; status: ProviderStatus; reason?: string}): Promise<ProviderStatusResult> {
  const {client, providerPubkey} = mainKeySession(options.loaded, options.mainKey)
  const provider = await putProviderStatus(client, providerPubkey, {status: options.status, ...(options.reason === undefined ? {} : {reason: options.reason})})
  return {provider_pubkey: providerPubkey, status: provider.status, reason: provider.status_reason ?? null}
}
