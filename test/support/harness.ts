import {signDelegation, AGENT_PERMISSIONS, type AgentPermission} from '../../src/core/delegation.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair, hostHeaderOf, randomHex, requestSigningMessage, signBytes, type KeyPair} from '../../src/core/signing.js'
import type {Clock} from '../../src/marketplace/clock.js'

export interface Answer<T = Record<string, unknown>> {
  status: number
  headers: Headers
  body: T
}

export interface SendOptions {
  key?: KeyPair
  body?: unknown
  /** Sent as is (for malformed JSON and oversized bodies); signed unless `signBody` says otherwise. */
  rawBody?: string | Buffer
  timestamp?: number
  nonce?: string
  /** Override what is signed, to tamper: the request sent differs from the one signed. */
  signed?: {method?: string; host?: string; pathAndQuery?: string; body?: string | Buffer}
  /** Sign the message this function returns instead of the §2 one (a v1 message, say). */
  message?: (request: {method: string; host: string; pathAndQuery: string; body: string | Buffer; timestamp: number; nonce: string}) => string
  headers?: Record<string, string>
  signal?: AbortSignal
}

/** The §2 headers of a request to `market`, signed by `key` for the host of its endpoint (what `send` sends). */
export function signedHeaders(market: Target, key: KeyPair, method: string, pathAndQuery: string, options: Omit<SendOptions, 'key' | 'headers'> = {}): Record<string, string> {
  const fullPath = '/api/v1' + pathAndQuery
  const body = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body))
  const request = {
    method: options.signed?.method ?? method,
    host: options.signed?.host ?? hostHeaderOf(market.endpoint),
    pathAndQuery: options.signed?.pathAndQuery ?? fullPath,
    body: options.signed?.body ?? body ?? '',
    timestamp: options.timestamp ?? market.clock.now(),
    nonce: options.nonce ?? randomHex(16),
  }
  return {
    'x-outpost-key': toHex(key.publicKey),
    'x-outpost-timestamp': String(request.timestamp),
    'x-outpost-nonce': request.nonce,
    'x-outpost-signature': toHex(signBytes(options.message?.(request) ?? requestSigningMessage(request), key.seed)),
  }
}

/** One request as the wire sees it: path under /api/v1 with its query, signed by `key` per PROTOCOL §2. */
export async function send<T = Record<string, unknown>>(
  market: Target,
  method: string,
  pathAndQuery: string,
  options: SendOptions = {},
): Promise<Answer<T>> {
  const fullPath = '/api/v1' + pathAndQuery
  const body = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body))
  const headers: Record<string, string> = {'content-type': 'application/json', ...options.headers}
  if (options.key) Object.assign(headers, signedHeaders(market, options.key, method, pathAndQuery, options), options.headers)
  const response = await fetch(market.endpoint + fullPath, {method, headers, body, signal: options.signal})
  const text = await response.text()
  return {status: response.status, headers: response.headers, body: (text ? JSON.parse(text) : undefined) as T}
}

export const pub = (key: KeyPair) => toHex(key.publicKey)

/** Anything requests can be sent to: an in-process marketplace or a `devnet start` child process. */
export interface Target {
  endpoint: string
  clock: Clock
}

export interface Provider {
  main: KeyPair
  agent: KeyPair
  pk: string
}

/** Registers a provider and delegates an agent key (all permissions unless told otherwise). */
export async function registerProvider(
  market: Target,
  options: {permissions?: readonly AgentPermission[]; expiresAt?: number | null; agent?: KeyPair} = {},
): Promise<Provider> {
  const main = generateKeyPair()
  const pk = pub(main)
  const registered = await send(market, 'POST', '/providers', {key: main, body: {name: 'Test provider', contact_email: 'ops@example.net'}})
  if (registered.status !== 201) throw new Error(`register: ${registered.status} ${JSON.stringify(registered.body)}`)
  const agent = options.agent ?? generateKeyPair()
  await delegate(market, main, agent, options.permissions ?? AGENT_PERMISSIONS, options.expiresAt ?? null)
  return {main, agent, pk}
}

export async function delegate(market: Target, main: KeyPair, agent: KeyPair, permissions: readonly AgentPermission[], expiresAt: number | null, label = 'test agent'): Promise<Answer> {
  const terms = {agentPubkey: pub(agent), permissions, expiresAt, label}
  const answer = await send(market, 'POST', `/providers/${pub(main)}/agent-delegations`, {
    key: main,
    body: {agent_pubkey: pub(agent), permissions, expires_at: expiresAt, label, signature: signDelegation(main, terms)},
  })
  if (answer.status !== 201) throw new Error(`delegate: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer
}

export const OFFERING = {name: 'small vm', product_type: 'compute', cpu_cores: 2, memory_mb: 2048, storage_gb: 20, price_per_hour: '0.25'} as const

export async function createOffering(market: Target, provider: Provider, overrides: Record<string, unknown> = {}): Promise<string> {
  const answer = await send<{offering_id: string}>(market, 'POST', `/providers/${provider.pk}/offerings`, {key: provider.main, body: {...OFFERING, ...overrides}})
  if (answer.status !== 201) throw new Error(`offering: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body.offering_id
}

export async function createContract(market: Target, offeringId: string, requester: KeyPair, durationHours = 1): Promise<string> {
  const answer = await send<{contract_id: string}>(market, 'POST', '/contracts', {
    key: requester,
    body: {offering_id: offeringId, ssh_pubkey: 'ssh-ed25519 AAAATEST renter', duration_hours: durationHours},
  })
  if (answer.status !== 201) throw new Error(`contract: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body.contract_id
}

/** The §4 error envelope's code, for terse assertions. */
export function errorOf(answer: Answer<unknown>): {status: number; code: string | undefined} {
  const body = answer.body as {error?: {code?: string}} | undefined
  return {status: answer.status, code: body?.error?.code}
}
