import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {Contract, ContractList, Instance} from '../../src/core/api/schemas.js'
import {openSealedCredentials, sealCredentials} from '../../src/core/sealing.js'
import {generateKeyPair, randomHex, signUsageRecord} from '../../src/core/signing.js'
import {createContract, createOffering, delegate, errorOf, registerProvider, send, type Provider} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

let market: Devnet

beforeAll(async () => {
  market = await startDevnet()
})
afterAll(() => market.stop())

const instance = {external_id: 'vm-101', ip_address: '192.0.2.10', ssh_port: 22}

async function contractFor(provider: Provider, requester = generateKeyPair(), durationHours = 1): Promise<string> {
  return createContract(market, await createOffering(market, provider), requester, durationHours)
}

function agentCall<T = Record<string, unknown>>(provider: Provider, method: string, suffix: string, body?: unknown, key = provider.agent) {
  return send<T>(market, method, `/providers/${provider.pk}${suffix}`, {key, body})
}

async function pendingIds(provider: Provider): Promise<string[]> {
  const answer = await agentCall(provider, 'GET', '/contracts/pending-provision?wait=0')
  return ContractList.parse(answer.body).contracts.map((contract) => contract.contract_id)
}

describe('§7 the agent provisions, reports and terminates', () => {
  it('walks a contract from accepted to terminated, with sealed credentials only the renter opens', async () => {
    const provider = await registerProvider(market)
    const renter = generateKeyPair()
    const id = await contractFor(provider, renter)
    expect(await pendingIds(provider)).toEqual([id])

    const lock = await agentCall(provider, 'POST', `/contracts/${id}/lock`, {ttl_seconds: 300})
    expect(lock.body).toEqual({acquired: true, contract_id: id, expires_at: expect.any(Number)})
    expect((await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning'})).body).toMatchObject({status: 'provisioning', provisioning_attempts: 1})
    // A live lock keeps a provisioning contract off the pending list.
    expect(await pendingIds(provider)).toEqual([])
    const credentials = {username: 'root', password: 'correct horse'}
    const sealed = sealCredentials(credentials, renter.publicKey)
    const provisioned = await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioned', instance: {...instance, sealed_credentials: sealed, details: {node: 'pve1'}}})
    expect(provisioned.status).toBe(200)
    const contract = Contract.parse(provisioned.body)
    expect(contract.status).toBe('provisioned')
    expect(Instance.parse(contract.instance)).toMatchObject(instance)
    // Repeating the current status is a no-op.
    expect((await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioned', instance})).body).toMatchObject({status: 'provisioned'})
    expect((await agentCall(provider, 'DELETE', `/contracts/${id}/lock`)).status).toBe(204)

    const renterView = await send<{instance: {sealed_credentials: string}}>(market, 'GET', `/contracts/${id}`, {key: renter})
    expect(openSealedCredentials(renterView.body.instance.sealed_credentials, renter.seed)).toEqual(credentials)

    const health = await agentCall(provider, 'POST', '/health', {checks: [{contract_id: id, status: 'healthy', uptime_seconds: 5, checked_at: market.clock.now()}]})
    expect(health.body).toEqual({accepted: 1})
    expect(ContractList.parse((await agentCall(provider, 'GET', '/contracts/active')).body).contracts).toMatchObject([{contract_id: id, status: 'active', termination_pending: false}])
    await agentCall(provider, 'POST', '/health', {checks: [{contract_id: id, status: 'unhealthy', checked_at: market.clock.now()}]})
    expect((await send(market, 'GET', `/providers/${provider.pk}/health-summary?days=30`)).body).toEqual({days: 30, total_checks: 2, healthy_checks: 1, uptime_percent: 50})

    const record = signUsageRecord(provider.agent, {
      record_id: randomHex(8),
      contract_id: id,
      period_start: market.clock.now() - 60_000,
      period_end: market.clock.now(),
      cpu_core_seconds: 120,
      memory_mb_seconds: 122_880,
      storage_gb_seconds: 1200,
      gpu_seconds: 0,
    })
    expect((await agentCall(provider, 'POST', '/usage', {records: [record]})).body).toEqual({accepted: 1, duplicates: 0})
    expect((await agentCall(provider, 'POST', '/usage', {records: [record]})).body).toEqual({accepted: 0, duplicates: 1})
    const forged = await agentCall(provider, 'POST', '/usage', {records: [{...record, record_id: 'other', cpu_core_seconds: 1}]})
    expect(forged.body).toMatchObject({error: {code: 'invalid_body', details: [{field: 'records.0.signature'}]}})

    const reconcile = await agentCall(provider, 'POST', '/reconcile', {
      instances: [{external_id: 'vm-101', contract_id: id}, {external_id: 'vm-999', contract_id: null}, {external_id: 'vm-7', contract_id: 'f'.repeat(32)}],
    })
    expect(reconcile.body).toEqual({keep: [{external_id: 'vm-101', contract_id: id}], terminate: [], unknown: [{external_id: 'vm-999', contract_id: null}, {external_id: 'vm-7', contract_id: 'f'.repeat(32)}]})

    market.clock.advance(30 * 60_000)
    expect((await send(market, 'POST', `/contracts/${id}/cancel`, {key: renter})).body).toMatchObject({status: 'cancelled', termination_pending: true})
    expect(ContractList.parse((await agentCall(provider, 'GET', '/contracts/active')).body).contracts).toMatchObject([{contract_id: id, status: 'cancelled', termination_pending: true}])
    expect((await agentCall(provider, 'POST', '/reconcile', {instances: [{external_id: 'vm-101', contract_id: id}]})).body).toMatchObject({terminate: [{external_id: 'vm-101'}]})
    const terminated = await agentCall(provider, 'PUT', `/contracts/${id}/terminated`)
    expect(terminated.body).toMatchObject({status: 'terminated', termination_pending: false})
    expect((await agentCall(provider, 'PUT', `/contracts/${id}/terminated`)).body).toMatchObject({status: 'terminated'})
    expect(ContractList.parse((await agentCall(provider, 'GET', '/contracts/active')).body).contracts).toEqual([])
    // About half an hour at 0.25 an hour.
    const stake = await send<{rewards_pending: string}>(market, 'GET', `/providers/${provider.pk}/stake`)
    expect(Number(stake.body.rewards_pending)).toBeGreaterThanOrEqual(0.125)
    expect(Number(stake.body.rewards_pending)).toBeLessThan(0.126)
  })

  it('refuses transitions the state machine does not have: 409 invalid_transition', async () => {
    const provider = await registerProvider(market)
    const id = await contractFor(provider)
    expect(errorOf(await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioned', instance}))).toEqual({status: 409, code: 'invalid_transition'})
    expect(errorOf(await agentCall(provider, 'PUT', `/contracts/${id}/terminated`))).toEqual({status: 409, code: 'invalid_transition'})
    await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning'})
    const noInstance = await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioned'})
    expect(noInstance.body).toMatchObject({error: {code: 'invalid_body', details: [{field: 'instance'}]}})
    const badInstance = await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioned', instance: {...instance, ip_address: 'not-an-ip', ssh_port: 70_000}})
    expect(badInstance.body).toMatchObject({error: {code: 'invalid_body'}})
    expect(JSON.stringify(badInstance.body)).toContain('instance.ip_address')
    expect(errorOf(await agentCall(provider, 'PUT', `/contracts/${'0'.repeat(32)}/provisioning`, {status: 'provisioning'}))).toEqual({status: 404, code: 'not_found'})
  })

  it('a retryable failure returns the contract to accepted, at most 3 attempts; then it fails for good and is refunded', async () => {
    const provider = await registerProvider(market)
    const id = await contractFor(provider)
    for (let attempt = 1; attempt <= 3; attempt++) {
      expect((await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning'})).body).toMatchObject({provisioning_attempts: attempt})
      const failed = await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning_failed', error: `attempt ${attempt}`, retry_possible: true})
      expect(failed.body).toMatchObject(attempt < 3 ? {status: 'accepted', refunded: false, last_error: `attempt ${attempt}`} : {status: 'provisioning_failed', refunded: true})
    }
    expect(errorOf(await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning'}))).toEqual({status: 409, code: 'invalid_transition'})
    expect((await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning_failed'})).status).toBe(200)
    expect(errorOf(await agentCall(provider, 'POST', `/contracts/${id}/lock`, {ttl_seconds: 60}))).toEqual({status: 409, code: 'invalid_transition'})
  })

  it('a contract expires after duration_hours and waits on the active list for termination', async () => {
    const provider = await registerProvider(market)
    const id = await contractFor(provider, generateKeyPair(), 2)
    await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning'})
    await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioned', instance})
    market.clock.advance(2 * 3_600_000 - 1000)
    expect(ContractList.parse((await agentCall(provider, 'GET', '/contracts/active')).body).contracts[0]?.status).toBe('provisioned')
    market.clock.advance(1000)
    expect(ContractList.parse((await agentCall(provider, 'GET', '/contracts/active')).body).contracts).toMatchObject([{contract_id: id, status: 'expired', termination_pending: true}])
    expect((await agentCall(provider, 'PUT', `/contracts/${id}/terminated`)).body).toMatchObject({status: 'terminated'})
  })
})

describe('§7 locks', () => {
  it('another agent key gets 409 locked until the lock expires; the holder renews and releases', async () => {
    const provider = await registerProvider(market)
    const second = generateKeyPair()
    await delegate(market, provider.main, second, ['fetch_contracts', 'provision'], null)
    const id = await contractFor(provider)
    expect(errorOf(await agentCall(provider, 'POST', `/contracts/${id}/lock`, {ttl_seconds: 29}))).toEqual({status: 400, code: 'invalid_body'})
    expect((await agentCall(provider, 'POST', `/contracts/${id}/lock`, {ttl_seconds: 30})).status).toBe(200)
    expect(errorOf(await agentCall(provider, 'POST', `/contracts/${id}/lock`, {ttl_seconds: 60}, second))).toEqual({status: 409, code: 'locked'})
    expect(errorOf(await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning'}, second))).toEqual({status: 409, code: 'locked'})
    expect(errorOf(await agentCall(provider, 'DELETE', `/contracts/${id}/lock`, undefined, second))).toEqual({status: 409, code: 'locked'})
    const renewed = await agentCall(provider, 'POST', `/contracts/${id}/lock`, {ttl_seconds: 60})
    expect(renewed.status).toBe(200)
    await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning'})
    market.clock.advance(60_001)
    // The holder went quiet: the provisioning contract is pending again and the other key may take it.
    expect(await pendingIds(provider)).toContain(id)
    expect((await agentCall(provider, 'POST', `/contracts/${id}/lock`, {ttl_seconds: 60}, second)).status).toBe(200)
    expect((await agentCall(provider, 'DELETE', `/contracts/${id}/lock`, undefined, second)).status).toBe(204)
  })

  it('two agent keys racing for one lock: exactly one wins, 100 times out of 100', async () => {
    const provider = await registerProvider(market)
    await send(market, 'POST', `/providers/${provider.pk}/stake`, {key: provider.main, body: {amount: '25000'}})
    const rival = generateKeyPair()
    await delegate(market, provider.main, rival, ['provision'], null)
    const offeringId = await createOffering(market, provider)
    const requester = generateKeyPair()
    const ids = await Promise.all(Array.from({length: 100}, () => createContract(market, offeringId, requester)))
    for (const id of ids) {
      const [first, second] = await Promise.all([
        agentCall(provider, 'POST', `/contracts/${id}/lock`, {ttl_seconds: 60}),
        agentCall(provider, 'POST', `/contracts/${id}/lock`, {ttl_seconds: 60}, rival),
      ])
      const statuses = [first.status, second.status].sort()
      expect(statuses).toEqual([200, 409])
      expect([errorOf(first).code, errorOf(second).code]).toContain('locked')
    }
  })
})

describe('§7 long poll', () => {
  it('a waiting pending-provision answers within milliseconds of a contract being created', async () => {
    const provider = await registerProvider(market)
    const offeringId = await createOffering(market, provider)
    const started = Date.now()
    const waiting = agentCall(provider, 'GET', '/contracts/pending-provision?wait=10')
    await new Promise((resolve) => setTimeout(resolve, 200))
    const createdAt = Date.now()
    const id = await createContract(market, offeringId, generateKeyPair())
    const answer = await waiting
    const answeredAfterCreate = Date.now() - createdAt
    expect(ContractList.parse(answer.body).contracts.map((contract) => contract.contract_id)).toEqual([id])
    expect(Date.now() - started).toBeLessThan(2000)
    expect(answeredAfterCreate).toBeLessThan(250)
  })

  it('answers empty when the wait is up, and wakes for its own provider only', async () => {
    const provider = await registerProvider(market)
    const other = await registerProvider(market)
    const started = Date.now()
    const waiting = agentCall(provider, 'GET', '/contracts/pending-provision?wait=1')
    await contractFor(other)
    expect((await waiting).body).toEqual({contracts: [], tier_limited: 0})
    expect(Date.now() - started).toBeGreaterThanOrEqual(950)
  })

  it('ends waiting requests promptly when the server stops', async () => {
    const own = await startDevnet()
    const provider = await registerProvider(own)
    const waiting = send(own, 'GET', `/providers/${provider.pk}/contracts/pending-provision?wait=30`, {key: provider.agent})
    await new Promise((resolve) => setTimeout(resolve, 100))
    const started = Date.now()
    await own.stop()
    expect((await waiting).body).toEqual({contracts: [], tier_limited: 0})
    expect(Date.now() - started).toBeLessThan(1000)
  })
})

describe('§8 stake tiers limit concurrent contracts', () => {
  it('hands an unstaked provider 2 contracts at a time, a consumer 4, and refuses provisioning past the tier', async () => {
    const provider = await registerProvider(market)
    const offeringId = await createOffering(market, provider)
    const requester = generateKeyPair()
    const ids: string[] = []
    for (let index = 0; index < 5; index++) ids.push(await createContract(market, offeringId, requester))
    expect(await pendingIds(provider)).toEqual(ids.slice(0, 2))
    for (const id of ids.slice(0, 2)) await agentCall(provider, 'PUT', `/contracts/${id}/provisioning`, {status: 'provisioning'})
    await agentCall(provider, 'POST', `/contracts/${ids[0]}/lock`, {ttl_seconds: 60})
    await agentCall(provider, 'POST', `/contracts/${ids[1]}/lock`, {ttl_seconds: 60})
    expect(await pendingIds(provider)).toEqual([])
    expect(errorOf(await agentCall(provider, 'PUT', `/contracts/${ids[2]}/provisioning`, {status: 'provisioning'}))).toEqual({status: 409, code: 'tier_limit'})
    await send(market, 'POST', `/providers/${provider.pk}/stake`, {key: provider.main, body: {amount: '1000'}})
    expect(await pendingIds(provider)).toEqual(ids.slice(2, 4))
  })

  it('says how many accepted contracts the tier holds back (devnet addition to pending-provision)', async () => {
    const provider = await registerProvider(market)
    const offeringId = await createOffering(market, provider)
    const requester = generateKeyPair()
    for (let index = 0; index < 5; index++) await createContract(market, offeringId, requester)
    const held = async () => (await agentCall(provider, 'GET', '/contracts/pending-provision?wait=0')).body.tier_limited
    expect(await held()).toBe(3)
    await send(market, 'POST', `/providers/${provider.pk}/stake`, {key: provider.main, body: {amount: '1000'}})
    expect(await held()).toBe(1)
    await send(market, 'POST', `/providers/${provider.pk}/stake`, {key: provider.main, body: {amount: '24000'}})
    expect(await held()).toBe(0)
  })
})

describe('§5 heartbeats of several agents (devnet addition: agent_id)', () => {
  const heartbeat = {version: '0.1.0', provisioner_type: 'local', capabilities: [], active_contracts: 0}
  type Answer = {agents: {agent_id: string; last_heartbeat_age_ms: number}[]}

  it("lists the provider's agents with the age of their last heartbeat, so a sibling can tell a dead one", async () => {
    const provider = await registerProvider(market)
    const second = generateKeyPair()
    await delegate(market, provider.main, second, ['heartbeat'], null, 'second agent')
    const [first, other] = ['aa'.repeat(16), 'bb'.repeat(16)]
    await agentCall(provider, 'POST', '/heartbeat', {...heartbeat, agent_id: first})
    market.clock.advance(40_000)
    const answer = await send<Answer>(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: second, body: {...heartbeat, agent_id: other}})
    expect(answer.status).toBe(200)
    expect(answer.body.agents).toEqual([
      {agent_id: first, last_heartbeat_age_ms: expect.any(Number)},
      {agent_id: other, last_heartbeat_age_ms: 0},
    ])
    expect(answer.body.agents[0]?.last_heartbeat_age_ms).toBeGreaterThanOrEqual(40_000)
    // An agent that sends no id is still acknowledged, and listed by nobody.
    const anonymous = await agentCall<Answer>(provider, 'POST', '/heartbeat', heartbeat)
    expect(anonymous.body.agents.map((agent) => agent.agent_id)).toEqual([first, other])
    expect(errorOf(await agentCall(provider, 'POST', '/heartbeat', {...heartbeat, agent_id: 'not-hex'}))).toEqual({status: 400, code: 'invalid_body'})
  })
})
