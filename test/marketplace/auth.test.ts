import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {signDelegation} from '../../src/core/delegation.js'
import {generateKeyPair, randomHex, sha256Hex} from '../../src/core/signing.js'
import {createContract, createOffering, delegate, errorOf, pub, registerProvider, send, signedHeaders, type Provider} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

let market: Devnet
let provider: Provider

beforeAll(async () => {
  market = await startDevnet()
  provider = await registerProvider(market)
})
afterAll(() => market.stop())

const heartbeat = {version: '0.1.0', provisioner_type: 'local', capabilities: ['ssh'], active_contracts: 0}

describe('PROTOCOL §2 request signing', () => {
  it('accepts a correctly signed request', async () => {
    const answer = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat})
    expect(answer.status).toBe(200)
    expect(answer.body).toEqual({acknowledged: true, next_heartbeat_seconds: 60, agents: []})
  })

  it('refuses a replayed request (same nonce, same signature): 401 replayed_nonce', async () => {
    const nonce = randomHex(16)
    const timestamp = market.clock.now()
    const first = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat, nonce, timestamp})
    expect(first.status).toBe(200)
    const replay = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat, nonce, timestamp})
    expect(errorOf(replay)).toEqual({status: 401, code: 'replayed_nonce'})
  })

  it('refuses a timestamp more than 300 s away, either way: 401 stale_timestamp', async () => {
    for (const skew of [-301_000, 301_000]) {
      const answer = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat, timestamp: market.clock.now() + skew})
      expect(errorOf(answer)).toEqual({status: 401, code: 'stale_timestamp'})
    }
    const inside = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat, timestamp: market.clock.now() - 290_000})
    expect(inside.status).toBe(200)
  })

  it('refuses a tampered method, path, query or body: 401 bad_signature', async () => {
    const path = `/providers/${provider.pk}/contracts/pending-provision?wait=0`
    const tampered = [
      send(market, 'GET', path, {key: provider.agent, signed: {method: 'POST'}}),
      send(market, 'GET', path, {key: provider.agent, signed: {pathAndQuery: `/api/v1/providers/${provider.pk}/contracts/active`}}),
      send(market, 'GET', `/providers/${provider.pk}/contracts/pending-provision?wait=1`, {key: provider.agent, signed: {pathAndQuery: `/api/v1${path}`}}),
      send(market, 'GET', `${path}&extra=1`, {key: provider.agent, signed: {pathAndQuery: `/api/v1${path}`}}),
      send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: {...heartbeat, active_contracts: 9}, signed: {body: JSON.stringify(heartbeat)}}),
    ]
    for (const answer of await Promise.all(tampered)) expect(errorOf(answer)).toEqual({status: 401, code: 'bad_signature'})
  })

  it('refuses a request signed for another host: 401 bad_signature', async () => {
    const path = `/providers/${provider.pk}/heartbeat`
    const answer = await send(market, 'POST', path, {key: provider.agent, body: heartbeat, signed: {host: 'market.example'}})
    expect(errorOf(answer)).toEqual({status: 401, code: 'bad_signature'})
    // The same server under another name (localhost, not 127.0.0.1) is another host.
    const sameServer = {endpoint: market.endpoint.replace('127.0.0.1', 'localhost'), clock: market.clock}
    const headers = signedHeaders(market, provider.agent, 'POST', path, {body: heartbeat})
    expect(errorOf(await send(sameServer, 'POST', path, {body: heartbeat, headers}))).toEqual({status: 401, code: 'bad_signature'})
    expect((await send(market, 'POST', path, {body: heartbeat, headers})).status).toBe(200)
  })

  it('no longer accepts a v1 signature (no host line): 401 bad_signature', async () => {
    const v1 = (request: {method: string; pathAndQuery: string; body: string | Buffer; timestamp: number; nonce: string}) =>
      ['outpost-request-v1', request.timestamp, request.nonce, request.method, request.pathAndQuery, sha256Hex(request.body)].join('\n')
    const answer = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat, message: v1})
    expect(errorOf(answer)).toEqual({status: 401, code: 'bad_signature'})
  })

  it('refuses a signature by another key than the one named: 401 bad_signature', async () => {
    const other = generateKeyPair()
    const answer = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: other, body: heartbeat, headers: {'x-outpost-key': pub(provider.agent)}})
    expect(errorOf(answer)).toEqual({status: 401, code: 'bad_signature'})
  })

  it('refuses missing or malformed headers: 401 bad_signature naming the header', async () => {
    const unsigned = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {body: heartbeat})
    expect(errorOf(unsigned)).toEqual({status: 401, code: 'bad_signature'})
    expect(JSON.stringify(unsigned.body)).toContain('x-outpost-key')
    for (const [name, value] of [['x-outpost-nonce', 'abc'], ['x-outpost-timestamp', '12e5'], ['x-outpost-signature', 'zz'], ['x-outpost-key', 'AB'.repeat(32)]]) {
      const answer = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat, headers: {[name as string]: value as string}})
      expect(errorOf(answer), name).toEqual({status: 401, code: 'bad_signature'})
    }
  })

  it('refuses a key it does not know on a provider route: 401 unknown_key', async () => {
    const stranger = generateKeyPair()
    const answer = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: stranger, body: heartbeat})
    expect(errorOf(answer)).toEqual({status: 401, code: 'unknown_key'})
  })

  it('keeps nonces across a restart inside the window', async () => {
    const own = await startDevnet()
    const {dataDir} = own
    const holder = await registerProvider(own)
    const nonce = randomHex(16)
    const timestamp = own.clock.now()
    expect((await send(own, 'POST', `/providers/${holder.pk}/heartbeat`, {key: holder.agent, body: heartbeat, nonce, timestamp})).status).toBe(200)
    await own.server.stop()
    const again = await startDevnet({dataDir})
    const replay = await send(again, 'POST', `/providers/${holder.pk}/heartbeat`, {key: holder.agent, body: heartbeat, nonce, timestamp})
    expect(errorOf(replay)).toEqual({status: 401, code: 'replayed_nonce'})
    await again.stop()
  })
})

describe('a signed request replays on no other marketplace (§2 v2)', () => {
  it('the same signed unstake accepted by one devnet is 401 bad_signature on a second one on another port', async () => {
    const second = await startDevnet()
    try {
      const main = generateKeyPair()
      for (const target of [market, second]) {
        expect((await send(target, 'POST', '/providers', {key: main, body: {name: 'Twice', contact_email: 'ops@twice.example'}})).status).toBe(201)
        expect((await send(target, 'POST', `/providers/${pub(main)}/stake`, {key: main, body: {amount: '100'}})).status).toBe(200)
      }
      const path = `/providers/${pub(main)}/unstake`
      const headers = signedHeaders(market, main, 'POST', path, {body: {amount: '40'}})
      expect((await send(market, 'POST', path, {body: {amount: '40'}, headers})).status).toBe(200)
      expect(errorOf(await send(second, 'POST', path, {body: {amount: '40'}, headers}))).toEqual({status: 401, code: 'bad_signature'})
      const stake = await send<{staked: string}>(second, 'GET', `/providers/${pub(main)}/stake`)
      expect(stake.body.staked).toBe('100')
    } finally {
      await second.stop()
    }
  })
})

describe('PROTOCOL §3 delegated agent keys', () => {
  const mainOnly: [string, string, unknown][] = [
    ['PUT', '/status', {status: 'paused'}],
    ['POST', '/agent-delegations', {agent_pubkey: 'ab'.repeat(32), permissions: ['heartbeat'], expires_at: null, label: 'x', signature: 'ab'.repeat(64)}],
    ['DELETE', '/agent-delegations/' + 'ab'.repeat(32), undefined],
    ['POST', '/offerings', {name: 'x', product_type: 'compute', cpu_cores: 1, memory_mb: 1, storage_gb: 1, price_per_hour: '1'}],
    ['POST', '/stake', {amount: '1'}],
    ['POST', '/unstake', {amount: '1'}],
    ['POST', '/rewards/claim', undefined],
    ['GET', '/disputes', undefined],
  ]

  it.each(mainOnly)('refuses every agent key on the main-only route %s %s: 403 permission_denied', async (method, suffix, body) => {
    const answer = await send(market, method, `/providers/${provider.pk}${suffix}`, {key: provider.agent, body})
    expect(errorOf(answer)).toEqual({status: 403, code: 'permission_denied'})
  })

  it('verifies a delegation row edited in the database afresh: a widened permission or another label is 403, however often the row verified before', async () => {
    const holder = await registerProvider(market, {permissions: ['heartbeat']})
    const heartbeatOf = () => send(market, 'POST', `/providers/${holder.pk}/heartbeat`, {key: holder.agent, body: heartbeat})
    expect((await heartbeatOf()).status).toBe(200)
    const edit = (column: 'permissions' | 'label', value: string) =>
      market.server.db.prepare(`UPDATE delegations SET ${column} = ? WHERE agent_pubkey = ?`).run(value, pub(holder.agent))
    edit('permissions', 'heartbeat,provision')
    expect(errorOf(await heartbeatOf())).toEqual({status: 403, code: 'permission_denied'})
    edit('permissions', 'heartbeat')
    expect((await heartbeatOf()).status).toBe(200)
    edit('label', 'another agent')
    expect(errorOf(await heartbeatOf())).toEqual({status: 403, code: 'permission_denied'})
  })

  it('refuses agent keys on the main-only routes outside /providers, and on registration', async () => {
    const requester = generateKeyPair()
    const contractId = await createContract(market, await createOffering(market, provider), requester)
    const dispute = await send<{dispute_id: string}>(market, 'POST', `/contracts/${contractId}/disputes`, {key: requester, body: {type: 'sla_violation', description: 'down'}})
    expect(dispute.status).toBe(201)
    const evidence = {provider_response: 'it was up', evidence: []}
    for (const [path, body] of [[`/disputes/${dispute.body.dispute_id}/evidence`, evidence], [`/disputes/${dispute.body.dispute_id}/accept`, undefined]] as const) {
      expect(errorOf(await send(market, 'POST', path, {key: provider.agent, body}))).toEqual({status: 403, code: 'permission_denied'})
    }
    expect(errorOf(await send(market, 'GET', `/contracts/${contractId}`, {key: provider.agent}))).toEqual({status: 403, code: 'permission_denied'})
    const register = await send(market, 'POST', '/providers', {key: provider.agent, body: {name: 'agent', contact_email: 'a@example.net'}})
    expect(errorOf(register)).toEqual({status: 403, code: 'permission_denied'})
  })

  it('refuses an agent key on a route its delegation does not list: 403 permission_denied', async () => {
    const narrow = await registerProvider(market, {permissions: ['heartbeat']})
    expect((await send(market, 'POST', `/providers/${narrow.pk}/heartbeat`, {key: narrow.agent, body: heartbeat})).status).toBe(200)
    const answer = await send(market, 'GET', `/providers/${narrow.pk}/contracts/active`, {key: narrow.agent})
    expect(errorOf(answer)).toEqual({status: 403, code: 'permission_denied'})
  })

  it('refuses the main key on agent routes other than benchmarks (PROTOCOL names their permission only)', async () => {
    expect(errorOf(await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.main, body: heartbeat}))).toEqual({status: 403, code: 'permission_denied'})
    expect((await send(market, 'POST', `/providers/${provider.pk}/benchmarks/challenges`, {key: provider.main})).status).toBe(201)
  })

  it('refuses an expired delegation on the first request after it expires: 403 delegation_expired', async () => {
    const expiring = await registerProvider(market, {expiresAt: market.clock.now() + 60_000})
    expect((await send(market, 'POST', `/providers/${expiring.pk}/heartbeat`, {key: expiring.agent, body: heartbeat})).status).toBe(200)
    market.clock.advance(60_001)
    const answer = await send(market, 'POST', `/providers/${expiring.pk}/heartbeat`, {key: expiring.agent, body: heartbeat})
    expect(errorOf(answer)).toEqual({status: 403, code: 'delegation_expired'})
  })

  it('refuses a revoked delegation on the very next request: 403 delegation_revoked', async () => {
    const revoking = await registerProvider(market)
    expect((await send(market, 'POST', `/providers/${revoking.pk}/heartbeat`, {key: revoking.agent, body: heartbeat})).status).toBe(200)
    const revoke = await send(market, 'DELETE', `/providers/${revoking.pk}/agent-delegations/${pub(revoking.agent)}`, {key: revoking.main})
    expect(revoke.status).toBe(204)
    const answer = await send(market, 'POST', `/providers/${revoking.pk}/heartbeat`, {key: revoking.agent, body: heartbeat})
    expect(errorOf(answer)).toEqual({status: 403, code: 'delegation_revoked'})
    const listed = await send<{delegations: {revoked_at: number | null}[]}>(market, 'GET', `/providers/${revoking.pk}/agent-delegations`, {key: revoking.main})
    expect(listed.body.delegations[0]?.revoked_at).toEqual(expect.any(Number))
    // Delegating the same key again by the same provider restores it.
    await delegate(market, revoking.main, revoking.agent, ['heartbeat'], null)
    expect((await send(market, 'POST', `/providers/${revoking.pk}/heartbeat`, {key: revoking.agent, body: heartbeat})).status).toBe(200)
  })

  it('refuses a delegation used for another provider: 403 wrong_provider', async () => {
    const other = await registerProvider(market)
    const answer = await send(market, 'POST', `/providers/${other.pk}/heartbeat`, {key: provider.agent, body: heartbeat})
    expect(errorOf(answer)).toEqual({status: 403, code: 'wrong_provider'})
    const mainOfOther = await send(market, 'POST', `/providers/${provider.pk}/stake`, {key: other.main, body: {amount: '1'}})
    expect(errorOf(mainOfOther)).toEqual({status: 403, code: 'wrong_provider'})
    const terms = {agentPubkey: pub(provider.agent), permissions: ['heartbeat'] as const, expiresAt: null, label: ''}
    const stolen = await send(market, 'POST', `/providers/${other.pk}/agent-delegations`, {
      key: other.main,
      body: {agent_pubkey: pub(provider.agent), permissions: ['heartbeat'], expires_at: null, label: '', signature: signDelegation(other.main, terms)},
    })
    expect(errorOf(stolen)).toEqual({status: 409, code: 'already_exists'})
  })

  it('refuses a delegation whose signature does not cover its terms: 400 naming signature', async () => {
    const agent = generateKeyPair()
    const answer = await send(market, 'POST', `/providers/${provider.pk}/agent-delegations`, {
      key: provider.main,
      body: {agent_pubkey: pub(agent), permissions: ['heartbeat', 'provision'], expires_at: null, label: 'forged', signature: 'ab'.repeat(64)},
    })
    expect(errorOf(answer)).toEqual({status: 400, code: 'invalid_body'})
    expect(answer.body).toMatchObject({error: {details: [{field: 'signature'}]}})
  })
})

describe('offline delegation signing: an unknown key submits its own first delegation', () => {
  function offlineDelegation(agent: ReturnType<typeof generateKeyPair>, label = 'offline') {
    const terms = {agentPubkey: pub(agent), permissions: ['heartbeat'] as const, expiresAt: null, label}
    return {agent_pubkey: pub(agent), permissions: ['heartbeat'], expires_at: null, label, signature: signDelegation(provider.main, terms)}
  }

  it('accepts the delegation signed by the main key elsewhere, submitted by the agent key it names', async () => {
    const agent = generateKeyPair()
    const answer = await send(market, 'POST', `/providers/${provider.pk}/agent-delegations`, {key: agent, body: offlineDelegation(agent)})
    expect(answer.status).toBe(201)
    const beat = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: agent, body: heartbeat})
    expect(beat.status).toBe(200)
  })

  it('refuses an unknown key submitting a delegation for another key: 401 unknown_key', async () => {
    const answer = await send(market, 'POST', `/providers/${provider.pk}/agent-delegations`, {key: generateKeyPair(), body: offlineDelegation(generateKeyPair())})
    expect(errorOf(answer)).toEqual({status: 401, code: 'unknown_key'})
  })

  it('refuses a forged self-submitted delegation: 400 naming signature', async () => {
    const agent = generateKeyPair()
    const answer = await send(market, 'POST', `/providers/${provider.pk}/agent-delegations`, {key: agent, body: {...offlineDelegation(agent), signature: 'ab'.repeat(64)}})
    expect(errorOf(answer)).toEqual({status: 400, code: 'invalid_body'})
  })

  it('never lets a revoked key resurrect itself by replaying its old delegation', async () => {
    const agent = generateKeyPair()
    const body = offlineDelegation(agent)
    expect((await send(market, 'POST', `/providers/${provider.pk}/agent-delegations`, {key: agent, body})).status).toBe(201)
    expect((await send(market, 'DELETE', `/providers/${provider.pk}/agent-delegations/${pub(agent)}`, {key: provider.main})).status).toBe(204)
    const replay = await send(market, 'POST', `/providers/${provider.pk}/agent-delegations`, {key: agent, body})
    expect(errorOf(replay)).toEqual({status: 403, code: 'permission_denied'})
    const stranger = generateKeyPair()
    expect((await send(market, 'POST', `/providers/${provider.pk}/agent-delegations`, {key: stranger, body: offlineDelegation(stranger)})).status).toBe(201)
    const again = await send(market, 'POST', `/providers/${provider.pk}/agent-delegations`, {key: stranger, body: offlineDelegation(stranger, 'changed')})
    expect(errorOf(again)).toEqual({status: 403, code: 'permission_denied'})
  })
})
