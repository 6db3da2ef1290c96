import {z} from 'zod'

import type {ApiClient} from './client.js'
import {Provider} from './main-key.js'

/** PROTOCOL §5 `PUT /providers/{pk}/status` (main key): a paused provider gets no new contracts. */
export type ProviderStatus = 'active' | 'paused'

export const ProviderWithStatus = Provider.extend({status: z.enum(['active', 'paused']), status_reason: z.string().nullish()})
export type ProviderWithStatus = z.infer<typeof ProviderWithStatus>

export function putProviderStatus(client: ApiClient, providerPubkey: string, body: {status: ProviderStatus; reason?: string}): Promise<ProviderWithStatus> {
  return client.put(`/providers/${providerPubkey}/status`, {schema: ProviderWithStatus, body})
}
