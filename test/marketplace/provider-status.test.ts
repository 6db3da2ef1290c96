import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {ContractList} from '../../src/core/api/schemas.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {createContract, createOffering, errorOf, registerProvider, send, type Provider} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/** PROTOCOL §5 as the devnet keeps it: a paused provider gets no new contracts; a draining agent is handed none. */

let market: Devnet

beforeAll(async () => {
  market = await startDevnet()
})
afterAll(() => market.stop())

const heartbeat = {version: '0.1.0', provisioner_type: 'local', capabilities: [], active_contracts: 0}

async function pendingIds(provider: Provider, wait = 0): Promise<string[]> {
  const answer = await send(market, 'GET', `/providers/${provider.pk}/contracts/pending-provision?wait=${wait}`, {key: provider.agent})
  return ContractList.parse(answer.body).contracts.map((contract) => contract.contract_id)
}

describe('§5 provider status and draining', () => {
  it('PUT /status paused refuses new contracts (409 provider_paused) until active again; only the main key may set it', async () => {
    const provider = await registerProvider(market)
    const offering = await createOffering(market, provider)
    const byAgent = await send(market, 'PUT', `/providers/${provider.pk}/status`, {key: provider.agent, body: {status: 'paused'}})
    expect(errorOf(byAgent).status).toBe(403)

    const paused = await send(market, 'PUT', `/providers/${provider.pk}/status`, {key: provider.main, body: {status: 'paused', reason: 'maintenance'}})
    expect(paused.body).toMatchObject({status: 'paused', status_reason: 'maintenance'})
    const refused = await send(market, 'POST', '/contracts', {key: generateKeyPair(), body: {offering_id: offering, ssh_pubkey: 'ssh-ed25519 AAAATEST renter', duration_hours: 1}})
    expect(errorOf(refused)).toEqual({status: 409, code: 'provider_paused'})
    expect((await send(market, 'GET', `/providers/${provider.pk}`)).body).toMatchObject({status: 'paused'})

    expect((await send(market, 'PUT', `/providers/${provider.pk}/status`, {key: provider.main, body: {status: 'active'}})).body).toMatchObject({status: 'active'})
    expect(await createContract(market, offering, generateKeyPair())).toMatch(/^[0-9a-f]{32}$/)
  })

  it('an agent that heartbeats draining is handed no contract; its next active heartbeat wakes a waiting long poll with it', async () => {
    const provider = await registerProvider(market)
    const id = await createContract(market, await createOffering(market, provider), generateKeyPair())
    const draining = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: {...heartbeat, status: 'draining'}})
    expect(draining.body).toMatchObject({acknowledged: true})
    expect(await pendingIds(provider)).toEqual([])

    const waiting = pendingIds(provider, 10)
    await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: {...heartbeat, status: 'active'}})
    expect(await waiting).toEqual([id])
  })
})
