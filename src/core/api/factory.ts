import type {LoadedConfig} from '../config/load.js'
import type {KeyPair} from '../signing.js'
import {ApiClient, marketplaceClientOptions, type RetryPolicy} from './client.js'

/** How hard a client retries what PROTOCOL §4 allows to be retried, named by who waits for the answer. */
export const RETRY_PROFILES = {
  /** A person at a terminal wants an answer soon: few, short retries. */
  interactive: {retries: 2, baseDelayMs: 200, maxDelayMs: 2000},
  /** The daemon's loops back off and try again on their own: few retries per request. */
  daemon: {retries: 2, baseDelayMs: 250, maxDelayMs: 2000},
  /** One attempt: whether and how the marketplace answers is itself the result (`doctor --verify-api`). */
  probe: {retries: 0, baseDelayMs: 0, maxDelayMs: 0},
} as const satisfies Record<string, RetryPolicy>

export type RetryProfile = keyof typeof RETRY_PROFILES

export interface ClientSettings {
  endpoint: string
  /** Signs every request that isn't public. */
  key?: KeyPair
  timeoutMs?: number
  userAgent?: string
  /** Allows plain http:// off loopback ([marketplace] allow_insecure_http, --allow-insecure-http). */
  allowInsecureHttp?: boolean
}

/** The one way a marketplace client is made: the retries come from a profile, never spelled out at the call site. */
export function createApiClient(profile: RetryProfile, settings: ClientSettings): ApiClient {
  return new ApiClient({...settings, retry: RETRY_PROFILES[profile]})
}

/** A client of the marketplace a config names, with its request timeout and its plain-HTTP rule. */
export function configuredClient(loaded: LoadedConfig, profile: RetryProfile, options: {key?: KeyPair; userAgent?: string} = {}): ApiClient {
  return createApiClient(profile, {...marketplaceClientOptions(loaded.config.marketplace), ...options})
}
