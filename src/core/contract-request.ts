import {z} from 'zod'

import type {Contract, SignedRequest} from './api/schemas.js'
import {canonicalJson, requestSigningMessage, sha256Hex, verifyHex} from './signing.js'

/**
 * PROTOCOL §6: before the agent seals credentials to `requester_pubkey` (or spends money on a machine), it checks
 * that the renter itself asked for this contract. The marketplace relays the renter's own signed `POST /contracts`
 * (or, for a contract won from an order, its `POST /orders`); a marketplace can't forge that signature, so it can't
 * swap the key that receives the credentials, the SSH key, the instance config, or inflate the machine.
 */

/** Why a contract's request was refused; each is final for that contract (`provisioning_failed`, not retryable). */
export type ContractRequestRefusal =
  /** The marketplace sent no signed request. */
  | 'request_missing'
  /** It does not verify against `requester_pubkey` as a §2 v2 `POST /api/v1/contracts` or `/api/v1/orders`. */
  | 'bad_signature'
  /** It was signed for another marketplace than the one this agent serves. */
  | 'wrong_host'
  /** Its body is not the JSON of a contract or order request. */
  | 'unreadable_request'
  /** It asked for another offering (or, from an order, it is another order). */
  | 'offering_mismatch'
  | 'ssh_key_mismatch'
  | 'instance_config_mismatch'
  /** The contract is dated too far from the request: a request reused for another contract. */
  | 'stale_request'
  /** The agent's config has no offering of this id, so the resources can't be bounded. */
  | 'unknown_offering'
  /** The contract asks more of the machine than the offering (or the order's requirements) the renter asked for. */
  | 'exceeds_offering'

export type ContractRequestCheck =
  | {ok: true; kind: 'contract' | 'order'}
  | {ok: false; reason: ContractRequestRefusal; detail: string}

/** What an offering gives, as the agent's own config describes it (`[[offerings]]`). */
export interface OfferingTerms {
  product_type?: string
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  gpu_count?: number
}

export interface ContractRequestOptions {
  /** The marketplace's Host as this agent signs it (ApiClient.host); when given, the request must name it. */
  host?: string
}

export const CONTRACTS_PATH = '/api/v1/contracts'
export const ORDERS_PATH = '/api/v1/orders'
/** §2: a request is accepted within 300 s of the server's clock, and a contract is made when it is accepted. */
const REQUEST_WINDOW_MS = 300_000
/** Room for the time between the request's acceptance and the row's write, on a loaded marketplace. */
const WRITE_SLACK_MS = 60_000

/**
 * A won order's id (and so its contract's offering_id): the first 16 bytes of the sha256 of the renter's signature,
 * in hex. Derived from the signed request, so an agent can tell that a contract comes from this order request.
 */
export function orderIdOf(request: Pick<SignedRequest, 'signature'>): string {
  return sha256Hex(Buffer.from(request.signature, 'hex')).slice(0, 32)
}

const ContractRequestBody = z.looseObject({
  offering_id: z.string(),
  ssh_pubkey: z.string(),
  instance_config: z.record(z.string(), z.unknown()).optional(),
})

const OrderRequestBody = z.looseObject({
  requirements: z.looseObject({
    cpu_cores: z.number(),
    memory_mb: z.number(),
    storage_gb: z.number(),
    gpu_count: z.number().optional(),
  }),
  ssh_pubkey: z.string(),
  instance_config: z.record(z.string(), z.unknown()).optional(),
})

const refuse = (reason: ContractRequestRefusal, detail: string): ContractRequestCheck => ({ok: false, reason, detail})

function signedAs(request: SignedRequest, path: string, body: Buffer, requester: string): boolean {
  const message = requestSigningMessage({method: 'POST', host: request.host, pathAndQuery: path, body, timestamp: request.timestamp, nonce: request.nonce})
  return verifyHex(message, request.signature, requester)
}

function sameConfig(asked: Record<string, unknown> | undefined, given: Contract['instance_config']): boolean {
  return canonicalJson(asked ?? null) === canonicalJson(given ?? null)
}

/** The first resource the contract has more of than `limit`, or undefined when it fits. */
function excess(contract: Contract, limit: OfferingTerms): string | undefined {
  const wanted: [string, number, number][] = [
    ['cpu_cores', contract.cpu_cores, limit.cpu_cores],
    ['memory_mb', contract.memory_mb, limit.memory_mb],
    ['storage_gb', contract.storage_gb, limit.storage_gb],
    ['gpu_count', contract.gpu_count, limit.gpu_count ?? 0],
  ]
  const over = wanted.find(([, has, most]) => has > most)
  return over && `${over[0]} ${over[1]} > ${over[2]}`
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown
  } catch {
    return undefined
  }
}

/**
 * Checks a contract against its renter's signed request (PROTOCOL §6): the signature verifies against
 * `requester_pubkey` as a §2 v2 message for `POST /api/v1/contracts` (or `/api/v1/orders` for a won order), for this
 * marketplace's host when `options.host` is given; the body names this contract's offering (or is this order), SSH
 * key and instance config; the contract is dated within the request's window; and its resources don't exceed
 * `offering` (the agent's own `[[offerings]]` entry for a direct contract; required) or the order's requirements.
 */
export function verifyContractRequest(contract: Contract, offering?: OfferingTerms, options: ContractRequestOptions = {}): ContractRequestCheck {
  const {request} = contract
  if (!request) return refuse('request_missing', 'the marketplace sent no signed request from the renter')
  if (options.host !== undefined && request.host !== options.host.toLowerCase()) {
    return refuse('wrong_host', `the renter signed the request for ${request.host}, not ${options.host.toLowerCase()}`)
  }
  const body = Buffer.from(request.body_b64, 'base64')
  const kind = signedAs(request, CONTRACTS_PATH, body, contract.requester_pubkey)
    ? 'contract'
    : signedAs(request, ORDERS_PATH, body, contract.requester_pubkey)
      ? 'order'
      : undefined
  if (!kind) return refuse('bad_signature', `the request does not verify against requester_pubkey as POST ${CONTRACTS_PATH} or ${ORDERS_PATH}`)

  const json = parseJson(body)
  if (kind === 'contract') {
    const asked = ContractRequestBody.safeParse(json)
    if (!asked.success) return refuse('unreadable_request', 'the signed body is not a contract request')
    if (asked.data.offering_id !== contract.offering_id) return refuse('offering_mismatch', `the renter asked for offering ${asked.data.offering_id}, not ${contract.offering_id}`)
    if (asked.data.ssh_pubkey !== contract.ssh_pubkey) return refuse('ssh_key_mismatch', 'the renter asked for another SSH key')
    if (!sameConfig(asked.data.instance_config, contract.instance_config)) return refuse('instance_config_mismatch', 'the renter asked for another instance_config')
    if (Math.abs(contract.created_at - request.timestamp) > REQUEST_WINDOW_MS + WRITE_SLACK_MS) {
      return refuse('stale_request', `the contract was made ${Math.round((contract.created_at - request.timestamp) / 1000)} s from its request`)
    }
    if (!offering) return refuse('unknown_offering', `this agent has no offering ${contract.offering_id} to bound the machine by`)
    if (offering.product_type !== undefined && offering.product_type !== contract.product_type) {
      return refuse('exceeds_offering', `the offering is ${offering.product_type}, the contract ${contract.product_type}`)
    }
    const over = excess(contract, offering)
    return over ? refuse('exceeds_offering', `the contract asks more than the offering: ${over}`) : {ok: true, kind}
  }

  const asked = OrderRequestBody.safeParse(json)
  if (!asked.success) return refuse('unreadable_request', 'the signed body is not an order request')
  if (orderIdOf(request) !== contract.offering_id) return refuse('offering_mismatch', `the contract's offering ${contract.offering_id} is not the order this request opened`)
  if (asked.data.ssh_pubkey !== contract.ssh_pubkey) return refuse('ssh_key_mismatch', 'the renter asked for another SSH key')
  if (!sameConfig(asked.data.instance_config, contract.instance_config)) return refuse('instance_config_mismatch', 'the renter asked for another instance_config')
  if (contract.created_at < request.timestamp - REQUEST_WINDOW_MS - WRITE_SLACK_MS) return refuse('stale_request', 'the contract is dated before the order was opened')
  const over = excess(contract, asked.data.requirements)
  return over ? refuse('exceeds_offering', `the contract asks more than the order: ${over}`) : {ok: true, kind}
}
