import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {Contract, ContractList} from '../../src/core/api/schemas.js'
import {computeWorkDigest} from '../../src/core/benchmark-workload.js'
import {generateKeyPair, sha256Hex} from '../../src/core/signing.js'
import {MAX_BODY_BYTES} from '../../src/marketplace/server.js'
import {createContract, createOffering, errorOf, OFFERING, pub, registerProvider, send, type Provider} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

let market: Devnet
let provider: Provider

beforeAll(async () => {
  market = await startDevnet({unbondingPeriodMs: 30_000})
  provider = await registerProvider(market)
})
afterAll(() => market.stop())

const heartbeat = {version: '0.1.0', provisioner_type: 'local', capabilities: ['ssh'], active_contracts: 1, capacity: {cpu_cores: 8}}

describe('§5 providers, delegations, heartbeat', () => {
  it('registers (201), updates (200), and describes a provider with agent status and stake', async () => {
    const main = generateKeyPair()
    const body = {name: 'Acme', contact_email: 'ops@acme.example', website: 'https://acme.example', regions: ['eu-west']}
    const first = await send(market, 'POST', '/providers', {key: main, body})
    expect(first.status).toBe(201)
    expect(first.body).toMatchObject({pubkey: pub(main), name: 'Acme', regions: ['eu-west'], status: 'active'})
    const again = await send(market, 'POST', '/providers', {key: main, body: {...body, name: 'Acme Compute'}})
    expect(again.status).toBe(200)
    const described = await send(market, 'GET', `/providers/${pub(main)}`)
    expect(described.status).toBe(200)
    expect(described.body).toMatchObject({
      name: 'Acme Compute',
      agent_status: {online: false, last_heartbeat_at: null},
      stake: {staked: '0', tier: 'unstaked', max_concurrent_contracts: 2, unbonding: [], rewards_pending: '0'},
    })
    expect(errorOf(await send(market, 'GET', `/providers/${'0'.repeat(64)}`))).toEqual({status: 404, code: 'not_found'})
  })

  it('heartbeat makes the agent online; 300 s of silence makes it offline', async () => {
    const fresh = await registerProvider(market)
    expect((await send(market, 'GET', `/providers/${fresh.pk}/agent-status`)).body).toMatchObject({online: false})
    expect((await send(market, 'POST', `/providers/${fresh.pk}/heartbeat`, {key: fresh.agent, body: heartbeat})).status).toBe(200)
    const online = await send(market, 'GET', `/providers/${fresh.pk}/agent-status`)
    expect(online.body).toEqual({online: true, last_heartbeat_at: expect.any(Number), version: '0.1.0', provisioner_type: 'local', active_contracts: 1})
    market.clock.advance(300_000)
    expect((await send(market, 'GET', `/providers/${fresh.pk}/agent-status`)).body).toMatchObject({online: false})
  })

  it('lists delegations to the main key and to its agent keys; revoking an unknown one is 404', async () => {
    const byAgent = await send<{delegations: unknown[]}>(market, 'GET', `/providers/${provider.pk}/agent-delegations`, {key: provider.agent})
    expect(byAgent.status).toBe(200)
    expect(byAgent.body.delegations).toEqual([
      {
        agent_pubkey: pub(provider.agent),
        provider_pubkey: provider.pk,
        permissions: ['benchmark', 'fetch_contracts', 'fetch_jobs', 'health_check', 'heartbeat', 'provision', 'run_jobs', 'usage_report'],
        expires_at: null,
        label: 'test agent',
        created_at: expect.any(Number),
        revoked_at: null,
      },
    ])
    const unknown = await send(market, 'DELETE', `/providers/${provider.pk}/agent-delegations/${'ab'.repeat(32)}`, {key: provider.main})
    expect(errorOf(unknown)).toEqual({status: 404, code: 'not_found'})
  })

  it('a paused provider gets no new contracts; its offerings show unavailable', async () => {
    const pausing = await registerProvider(market)
    const offeringId = await createOffering(market, pausing)
    const paused = await send(market, 'PUT', `/providers/${pausing.pk}/status`, {key: pausing.main, body: {status: 'paused', reason: 'maintenance'}})
    expect(paused.body).toMatchObject({status: 'paused', status_reason: 'maintenance'})
    const refused = await send(market, 'POST', '/contracts', {key: generateKeyPair(), body: {offering_id: offeringId, ssh_pubkey: 'ssh-ed25519 AAAA', duration_hours: 1}})
    expect(errorOf(refused)).toEqual({status: 409, code: 'provider_paused'})
    const listed = await send<{offerings: {offering_id: string; available: boolean}[]}>(market, 'GET', '/offerings')
    expect(listed.body.offerings.find((offering) => offering.offering_id === offeringId)?.available).toBe(false)
    await send(market, 'PUT', `/providers/${pausing.pk}/status`, {key: pausing.main, body: {status: 'active'}})
    await createContract(market, offeringId, generateKeyPair())
  })
})

describe('§6 offerings and contracts', () => {
  it('creates and lists offerings with exact decimal prices', async () => {
    const created = await send(market, 'POST', `/providers/${provider.pk}/offerings`, {key: provider.main, body: {...OFFERING, price_per_hour: '0.000001', gpu_count: 1, region: 'eu'}})
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({offering_id: expect.stringMatching(/^[0-9a-f]{32}$/), price_per_hour: '0.000001', gpu_count: 1, region: 'eu', available: true})
    const listed = await send<{offerings: unknown[]}>(market, 'GET', '/offerings')
    expect(listed.body.offerings).toContainEqual(created.body)
  })

  it('creates a contract for an existing offering only; the signer is the requester; the answer parses as a client Contract', async () => {
    const requester = generateKeyPair()
    const offeringId = await createOffering(market, provider)
    const created = await send(market, 'POST', '/contracts', {key: requester, body: {offering_id: offeringId, ssh_pubkey: 'ssh-ed25519 AAAA', duration_hours: 2, instance_config: {image: 'debian-12'}}})
    expect(created.status).toBe(201)
    const contract = Contract.parse(created.body)
    expect(contract).toMatchObject({status: 'accepted', requester_pubkey: pub(requester), offering_id: offeringId, cpu_cores: 2, instance_config: {image: 'debian-12'}})
    const missing = await send(market, 'POST', '/contracts', {key: requester, body: {offering_id: 'f'.repeat(32), ssh_pubkey: 'ssh-ed25519 AAAA', duration_hours: 1}})
    expect(errorOf(missing)).toEqual({status: 404, code: 'not_found'})
  })

  it('shows a contract to its requester and to the provider main key only', async () => {
    const requester = generateKeyPair()
    const contractId = await createContract(market, await createOffering(market, provider), requester)
    expect((await send(market, 'GET', `/contracts/${contractId}`, {key: requester})).status).toBe(200)
    expect((await send(market, 'GET', `/contracts/${contractId}`, {key: provider.main})).status).toBe(200)
    expect(errorOf(await send(market, 'GET', `/contracts/${contractId}`, {key: generateKeyPair()}))).toEqual({status: 403, code: 'permission_denied'})
    expect(errorOf(await send(market, 'GET', `/contracts/${'0'.repeat(32)}`, {key: requester}))).toEqual({status: 404, code: 'not_found'})
    expect(errorOf(await send(market, 'GET', '/contracts/not-an-id', {key: requester}))).toEqual({status: 404, code: 'not_found'})
  })

  it('cancel: requester only, once (then 409 invalid_transition)', async () => {
    const requester = generateKeyPair()
    const contractId = await createContract(market, await createOffering(market, provider), requester)
    expect(errorOf(await send(market, 'POST', `/contracts/${contractId}/cancel`, {key: provider.main}))).toEqual({status: 403, code: 'permission_denied'})
    const cancelled = await send(market, 'POST', `/contracts/${contractId}/cancel`, {key: requester})
    expect(cancelled.status).toBe(200)
    expect(Contract.parse(cancelled.body)).toMatchObject({status: 'cancelled', termination_pending: true})
    expect(errorOf(await send(market, 'POST', `/contracts/${contractId}/cancel`, {key: requester}))).toEqual({status: 409, code: 'invalid_transition'})
  })
})

describe('§8 stake and rewards', () => {
  it('stakes and unstakes exact decimals; tiers follow the stake; unbonding releases after the period', async () => {
    const staker = await registerProvider(market)
    const path = `/providers/${staker.pk}`
    expect((await send(market, 'POST', `${path}/stake`, {key: staker.main, body: {amount: '999.999999'}})).body).toMatchObject({staked: '999.999999', tier: 'unstaked', max_concurrent_contracts: 2})
    expect((await send(market, 'POST', `${path}/stake`, {key: staker.main, body: {amount: '0.000001'}})).body).toMatchObject({staked: '1000', tier: 'consumer', max_concurrent_contracts: 4})
    expect((await send(market, 'POST', `${path}/stake`, {key: staker.main, body: {amount: '24000'}})).body).toMatchObject({staked: '25000', tier: 'frontier', max_concurrent_contracts: null})
    const unstaked = await send<{unbonding: {amount: string; release_at: number}[]}>(market, 'POST', `${path}/unstake`, {key: staker.main, body: {amount: '15000.5'}})
    expect(unstaked.body).toMatchObject({staked: '9999.5', tier: 'datacenter', max_concurrent_contracts: 16, unbonding: [{amount: '15000.5'}]})
    expect(unstaked.body.unbonding[0]?.release_at).toBeGreaterThanOrEqual(market.clock.now() + 29_000)
    expect(errorOf(await send(market, 'POST', `${path}/unstake`, {key: staker.main, body: {amount: '10000'}}))).toEqual({status: 409, code: 'insufficient_stake'})
    for (const amount of ['0', '-1', '1.0000001', '1e3']) {
      expect(errorOf(await send(market, 'POST', `${path}/stake`, {key: staker.main, body: {amount}})), amount).toEqual({status: 400, code: 'invalid_body'})
    }
    expect(errorOf(await send(market, 'POST', `${path}/stake`, {key: staker.main, body: {amount: 5}}))).toEqual({status: 400, code: 'invalid_body'})
    market.clock.advance(30_000)
    expect((await send(market, 'GET', `${path}/stake`)).body).toMatchObject({staked: '9999.5', unbonding: []})
    const claimed = await send(market, 'POST', `${path}/rewards/claim`, {key: staker.main})
    expect(claimed.body).toMatchObject({claimed: '0', stake: {staked: '9999.5'}})
  })
})

describe('§9 benchmarks', () => {
  it('a challenge takes one report, right or wrong, whose work_digest re-runs on the server; it expires after 15 min', async () => {
    const path = `/providers/${provider.pk}/benchmarks`
    const challenge = await send<{challenge_id: string; seed: string; expires_at: number}>(market, 'POST', `${path}/challenges`, {key: provider.agent})
    expect(challenge.status).toBe(201)
    expect(challenge.body.seed).toMatch(/^[0-9a-f]{64}$/)
    expect(challenge.body.expires_at - market.clock.now()).toBeGreaterThan(14 * 60_000)
    const report = {challenge_id: challenge.body.challenge_id, machine: {cpu: 'test'}, results: {score: 1}, work_digest: sha256Hex('wrong')}
    const wrong = await send(market, 'POST', path, {key: provider.agent, body: report})
    expect(errorOf(wrong)).toEqual({status: 400, code: 'invalid_body'})
    expect(wrong.body).toMatchObject({error: {details: [{field: 'work_digest'}]}})
    // The wrong report used the challenge up: the right digest now needs a new one.
    const tooLate = {...report, work_digest: computeWorkDigest(challenge.body.seed)}
    expect(errorOf(await send(market, 'POST', path, {key: provider.agent, body: tooLate}))).toEqual({status: 409, code: 'challenge_used'})
    const fresh = await send<{challenge_id: string; seed: string}>(market, 'POST', `${path}/challenges`, {key: provider.agent})
    const right = {...report, challenge_id: fresh.body.challenge_id, work_digest: computeWorkDigest(fresh.body.seed)}
    const accepted = await send(market, 'POST', path, {key: provider.agent, body: right})
    expect(accepted.status).toBe(201)
    expect(accepted.body).toMatchObject({verified: true, machine: {cpu: 'test'}, submitted_by: pub(provider.agent)})
    expect(errorOf(await send(market, 'POST', path, {key: provider.agent, body: right}))).toEqual({status: 409, code: 'challenge_used'})
    const listed = await send<{reports: unknown[]}>(market, 'GET', path)
    expect(listed.body.reports).toContainEqual(accepted.body)

    const late = await send<{challenge_id: string; seed: string}>(market, 'POST', `${path}/challenges`, {key: provider.main})
    market.clock.advance(15 * 60_000)
    const expired = await send(market, 'POST', path, {key: provider.main, body: {...right, challenge_id: late.body.challenge_id, work_digest: computeWorkDigest(late.body.seed)}})
    expect(errorOf(expired)).toEqual({status: 409, code: 'challenge_expired'})
    const other = await registerProvider(market)
    const foreign = await send(market, 'POST', `/providers/${other.pk}/benchmarks`, {key: other.agent, body: right})
    expect(errorOf(foreign)).toEqual({status: 404, code: 'not_found'})
  })
})

describe('§10 disputes', () => {
  it('the requester opens, the provider answers with evidence and accepts; each party reads it, nobody else', async () => {
    const requester = generateKeyPair()
    const contractId = await createContract(market, await createOffering(market, provider), requester)
    expect(errorOf(await send(market, 'POST', `/contracts/${contractId}/disputes`, {key: generateKeyPair(), body: {type: 'sla_violation', description: 'x'}}))).toEqual({
      status: 403,
      code: 'permission_denied',
    })
    const bad = await send(market, 'POST', `/contracts/${contractId}/disputes`, {key: requester, body: {type: 'complaint', description: 'x'}})
    expect(bad.body).toMatchObject({error: {code: 'invalid_body', details: [{field: 'type'}]}})
    const opened = await send<{dispute_id: string}>(market, 'POST', `/contracts/${contractId}/disputes`, {key: requester, body: {type: 'usage_disagreement', description: 'billed twice'}})
    expect(opened.status).toBe(201)
    expect(opened.body).toMatchObject({status: 'open', contract_id: contractId, requester_pubkey: pub(requester), provider_pubkey: provider.pk, evidence: []})
    const id = opened.body.dispute_id
    const open = await send<{disputes: {dispute_id: string}[]}>(market, 'GET', `/providers/${provider.pk}/disputes?status=open`, {key: provider.main})
    expect(open.body.disputes.map((dispute) => dispute.dispute_id)).toContain(id)
    expect(errorOf(await send(market, 'GET', `/providers/${provider.pk}/disputes?status=closed`, {key: provider.main}))).toEqual({status: 400, code: 'invalid_query'})
    expect((await send(market, 'GET', `/disputes/${id}`, {key: requester})).status).toBe(200)
    expect(errorOf(await send(market, 'GET', `/disputes/${id}`, {key: generateKeyPair()}))).toEqual({status: 403, code: 'permission_denied'})
    const evidence = {provider_response: 'usage records attached', evidence: [{type: 'usage_record', description: 'signed record', hash: sha256Hex('record'), data: {n: 1}}]}
    const responded = await send(market, 'POST', `/disputes/${id}/evidence`, {key: provider.main, body: evidence})
    expect(responded.body).toMatchObject({status: 'responded', provider_response: 'usage records attached', evidence: evidence.evidence})
    expect((await send<{disputes: unknown[]}>(market, 'GET', `/providers/${provider.pk}/disputes?status=responded`, {key: provider.main})).body.disputes).toHaveLength(1)
    expect(errorOf(await send(market, 'POST', `/disputes/${id}/accept`, {key: requester}))).toEqual({status: 403, code: 'permission_denied'})
    expect((await send(market, 'POST', `/disputes/${id}/accept`, {key: provider.main})).body).toMatchObject({status: 'accepted'})
    expect(errorOf(await send(market, 'POST', `/disputes/${id}/accept`, {key: provider.main}))).toEqual({status: 409, code: 'invalid_transition'})
    expect(errorOf(await send(market, 'POST', `/disputes/${id}/evidence`, {key: provider.main, body: evidence}))).toEqual({status: 409, code: 'invalid_transition'})
    expect(errorOf(await send(market, 'GET', `/disputes/${'0'.repeat(32)}`, {key: requester}))).toEqual({status: 404, code: 'not_found'})
  })
})

describe('§4 errors and limits', () => {
  it('answers a body of 1 MiB + 1 with 413 body_too_large, and takes exactly 1 MiB to the schema', async () => {
    const path = `/providers/${provider.pk}/heartbeat`
    const over = Buffer.alloc(MAX_BODY_BYTES + 1, 0x20)
    expect(errorOf(await send(market, 'POST', path, {key: provider.agent, rawBody: over}))).toEqual({status: 413, code: 'body_too_large'})
    const exact = Buffer.alloc(MAX_BODY_BYTES, 0x20)
    expect(errorOf(await send(market, 'POST', path, {key: provider.agent, rawBody: exact}))).toEqual({status: 400, code: 'invalid_body'})
  })

  it('answers malformed JSON with 400 invalid_body', async () => {
    const answer = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, rawBody: '{"version": '})
    expect(answer.body).toEqual({error: {code: 'invalid_body', message: 'body: not valid JSON', details: [{field: 'body', message: 'not valid JSON'}]}})
  })

  it('answers wrong types, missing and unknown fields with 400 naming each field', async () => {
    const answer = await send(market, 'POST', `/providers/${provider.pk}/offerings`, {
      key: provider.main,
      body: {...OFFERING, memory_mb: '2048', cpu_cores: -1, price_per_hour: 0.25, colour: 'red', name: undefined},
    })
    expect(answer.status).toBe(400)
    const fields = (answer.body as {error: {details: {field: string}[]}}).error.details.map((detail) => detail.field).sort()
    expect(fields).toEqual(['colour', 'cpu_cores', 'memory_mb', 'name', 'price_per_hour'])
    expect((answer.body as {error: {message: string}}).error.message).toContain('memory_mb:')
  })

  it('answers a bad query with 400 invalid_query, an unknown route with 404, a wrong method with 405', async () => {
    for (const wait of ['31', '-1', '1.5', 'soon']) {
      const answer = await send(market, 'GET', `/providers/${provider.pk}/contracts/pending-provision?wait=${wait}`, {key: provider.agent})
      expect(errorOf(answer), wait).toEqual({status: 400, code: 'invalid_query'})
    }
    expect(errorOf(await send(market, 'GET', `/providers/${provider.pk}/health-summary?days=0`))).toEqual({status: 400, code: 'invalid_query'})
    expect(errorOf(await send(market, 'GET', '/nothing-here'))).toEqual({status: 404, code: 'not_found'})
    expect(errorOf(await send(market, 'DELETE', '/offerings'))).toEqual({status: 405, code: 'method_not_allowed'})
  })

  it('rate limits per key with 429 rate_limited and Retry-After', async () => {
    const limited = await startDevnet({rateLimitPerSecond: 5})
    const holder = await registerProvider(limited)
    const answers = await Promise.all(Array.from({length: 12}, () => send(limited, 'POST', `/providers/${holder.pk}/heartbeat`, {key: holder.agent, body: heartbeat})))
    const refused = answers.filter((answer) => answer.status === 429)
    expect(refused.length).toBeGreaterThan(0)
    expect(errorOf(refused[0] ?? answers[0]!)).toEqual({status: 429, code: 'rate_limited'})
    expect(Number(refused[0]?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    // Another key has its own bucket.
    expect((await send(limited, 'POST', `/providers/${holder.pk}/stake`, {key: holder.main, body: {amount: '1'}})).status).toBe(200)
    await limited.stop()
  })

  it('answers an unexpected failure with 500 internal', async () => {
    const broken = await startDevnet()
    broken.server.db.exec('DROP TABLE offerings')
    const answer = await send(broken, 'GET', '/offerings')
    expect(errorOf(answer)).toEqual({status: 500, code: 'internal'})
    await broken.stop()
  })

  it('agent lists parse with the client ContractList schema', async () => {
    const answer = await send(market, 'GET', `/providers/${provider.pk}/contracts/pending-provision`, {key: provider.agent})
    expect(ContractList.parse(answer.body).contracts.length).toBeGreaterThan(0)
    expect(ContractList.parse((await send(market, 'GET', `/providers/${provider.pk}/contracts/active`, {key: provider.agent})).body)).toBeDefined()
  })
})
