import {z} from 'zod'

import {API_PREFIX, type ApiClient} from './client.js'
import {ApiError} from './api-error.js'

/** What answers at an endpoint: an Outpost marketplace, some other HTTP server, or nothing. */
export type EndpointIdentity = {kind: 'marketplace'} | {kind: 'other'; detail: string} | {kind: 'unreachable'; detail: string}

const OfferingsShape = z.object({offerings: z.array(z.unknown())})

/**
 * One public, side-effect-free request that only a marketplace answers in the protocol's shape (PROTOCOL §6, `GET
 * /offerings`). An answer that can't be read is "other", never taken for a marketplace.
 */
export async function identifyEndpoint(client: ApiClient): Promise<EndpointIdentity> {
  try {
    const answer = await client.raw('GET', '/offerings', {public: true})
    if (answer.status === 200 && OfferingsShape.safeParse(answer.json).success) return {kind: 'marketplace'}
    const body = answer.json === undefined ? ', not JSON' : answer.status === 200 ? ', not an offerings list' : ''
    return {kind: 'other', detail: `GET ${API_PREFIX}/offerings answered ${answer.status}${body}`}
  } catch (error) {
    if (error instanceof ApiError && error.status === 0) return {kind: 'unreachable', detail: error.message}
    throw error
  }
}

/** The cause and remedy for an endpoint that answers HTTP but is no Outpost marketplace API. */
export function notMarketplace(endpoint: string, detail: string): {message: string; remedy: string} {
  const base = endpoint.replace(/\/+$/, '')
  const suffix = /\/api\/v1$/.test(base)
  return {
    message: `${base} is not an Outpost marketplace API${suffix ? ' (drop /api/v1?)' : ''}: ${detail}`,
    remedy: suffix
      ? `set [marketplace] endpoint = "${base.replace(/\/api\/v1$/, '')}": the base URL, without /api/v1`
      : "check [marketplace] endpoint: the marketplace's base URL (without /api/v1), as its operator publishes it",
  }
}
