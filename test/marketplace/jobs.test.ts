import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'

import {sha256Hex, generateKeyPair} from '../../src/core/signing.js'
import {createContract, createOffering, errorOf, send} from '../support/harness.js'
import {
  createJob,
  envelope,
  GHZ_3,
  heartbeat,
  jobBody,
  jobProvider,
  jobsApi,
  lease,
  openJobIds,
  simulate,
  stakeOf,
  submit,
  uploadProgram,
  type JobAnswer,
  type LeaseAnswer,
} from './job-fixtures.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/** PROTOCOL §12 on the reference marketplace: programs, jobs, who is offered what, leases and their collateral, expiry. */

const QUANTUM_INPUT = JSON.stringify({shots: 200, seed: 7})

let market: Devnet
let ghzDigest: string

beforeAll(async () => {
  market = await startDevnet()
  ghzDigest = await uploadProgram(market, generateKeyPair(), Buffer.from(GHZ_3))
})
afterAll(() => market.stop())

const quantumJob = (overrides: Record<string, unknown> = {}) => createJob(market, generateKeyPair(), jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT, overrides))
const honestOutput = () => Buffer.from(JSON.stringify(simulate(GHZ_3, 200)))

describe('§12 programs', () => {
  it('stores program bytes by digest, idempotently, up to 16 MiB, and serves them publicly', async () => {
    const renter = generateKeyPair()
    const bytes = Buffer.alloc(2 * 1024 * 1024, 7)
    const first = await send(market, 'POST', '/programs', {key: renter, rawBody: bytes, headers: {'content-type': 'application/octet-stream'}})
    expect(first.status).toBe(201)
    expect(first.body).toEqual({digest: sha256Hex(bytes), size_bytes: bytes.length})
    const again = await send(market, 'POST', '/programs', {key: generateKeyPair(), rawBody: bytes, headers: {'content-type': 'application/octet-stream'}})
    expect(again.status).toBe(201)
    expect(again.body).toEqual(first.body)
    const served = await jobsApi(market, await jobProvider(market)).program(sha256Hex(bytes))
    expect(served.equals(bytes)).toBe(true)
    expect(errorOf(await send(market, 'GET', `/programs/${'0'.repeat(64)}`))).toEqual({status: 404, code: 'not_found'})
  })

  it('keeps the 1 MiB JSON limit everywhere else, 16 MiB on programs, and wants a signature', async () => {
    const renter = generateKeyPair()
    const tooBig = Buffer.alloc(16 * 1024 * 1024 + 1, 1)
    expect(errorOf(await send(market, 'POST', '/programs', {key: renter, rawBody: tooBig}))).toEqual({status: 413, code: 'body_too_large'})
    const bigJson = JSON.stringify(jobBody('quantum_circuit', ghzDigest, Buffer.alloc(1024 * 1024, 1)))
    expect(errorOf(await send(market, 'POST', '/jobs', {key: renter, rawBody: bigJson}))).toEqual({status: 413, code: 'body_too_large'})
    expect((await send(market, 'POST', '/programs', {rawBody: Buffer.from('x')})).status).toBe(401)
    expect(errorOf(await send(market, 'POST', '/programs', {key: renter, rawBody: Buffer.alloc(0)}))).toEqual({status: 400, code: 'invalid_body'})
  })
})

describe('§12 creating jobs', () => {
  it('returns the job as §12 shapes it, open, with digests and sizes', async () => {
    const renter = generateKeyPair()
    const job = await createJob(market, renter, jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT, {resources: {cpu_cores: 2, memory_mb: 1024, gpu_count: 0}}))
    expect(job).toMatchObject({
      kind: 'quantum_circuit',
      status: 'open',
      program: {digest: ghzDigest, size_bytes: GHZ_3.length},
      input: {digest: sha256Hex(QUANTUM_INPUT), size_bytes: QUANTUM_INPUT.length},
      resources: {cpu_cores: 2, memory_mb: 1024, gpu_count: 0},
      reward: {mode: 'fixed', amount: '2.5'},
      collateral: '10',
      lease_seconds: 60,
      attempts_left: 3,
      requires_attestation: false,
      requester_pubkey: Buffer.from(renter.publicKey).toString('hex'),
    })
    expect(job.job_id).toMatch(/^[0-9a-f]{32}$/)
    expect(job.deadline - (job as JobAnswer & {created_at: number}).created_at).toBe(600_000)
  })

  it('refuses jobs whose program, input or terms do not fit, naming the field', async () => {
    const renter = generateKeyPair()
    const zkDigest = await uploadProgram(market, renter, Buffer.from('{"format": "something else"}'))
    const cases: [Record<string, unknown>, string][] = [
      [jobBody('quantum_circuit', 'ab'.repeat(32), QUANTUM_INPUT), 'program_digest'],
      [jobBody('zk_proof', ghzDigest, '{"a": "1"}'), 'program_digest'],
      [jobBody('zk_proof', zkDigest, '{"a": "1"}'), 'program_digest'],
      [jobBody('quantum_circuit', ghzDigest, '{"shots": 0, "seed": 1}'), 'input_b64'],
      [jobBody('quantum_circuit', ghzDigest, 'not json'), 'input_b64'],
      [jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT, {reward: {mode: 'auction', max_fee: '1'}, deadline_seconds: 60}), 'deadline_seconds'],
      [jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT, {bid_seconds: 10}), 'bid_seconds'],
      [jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT, {expect_public_signals: ['1']}), 'expect_public_signals'],
      [jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT, {collateral: '-1'}), 'collateral'],
      [jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT, {max_attempts: 0}), 'max_attempts'],
    ]
    for (const [body, field] of cases) {
      const answer = await send<{error: {details: {field: string}[]}}>(market, 'POST', '/jobs', {key: renter, body})
      expect(errorOf(answer), field).toEqual({status: 400, code: 'invalid_body'})
      expect(answer.body.error.details.map((detail) => detail.field), field).toContain(field)
    }
  })
})

describe('§12 offers: who sees a job in jobs/open', () => {
  it('offers a job only to providers whose heartbeat lists job:<kind> and whose capacity fits, active and not draining', async () => {
    const job = await quantumJob({resources: {cpu_cores: 4, memory_mb: 4096, gpu_count: 1, gpu_model: 'H100'}})
    const gpu = {cpu_cores: 8, memory_mb: 16_384, gpu_count: 1, gpu_models: ['h100']}
    const fit = await jobProvider(market, {capacity: gpu})
    const noCapability = await jobProvider(market, {capabilities: ['job:zk_proof'], capacity: gpu})
    const tooSmall = await jobProvider(market, {capacity: {cpu_cores: 2, memory_mb: 16_384, gpu_count: 1, gpu_models: ['h100']}})
    const otherGpu = await jobProvider(market, {capacity: {...gpu, gpu_models: ['a100']}})
    const draining = await jobProvider(market, {capacity: gpu, status: 'draining'})
    const paused = await jobProvider(market, {capacity: gpu})
    await send(market, 'PUT', `/providers/${paused.pk}/status`, {key: paused.main, body: {status: 'paused'}})
    expect(await openJobIds(market, fit)).toContain(job.job_id)
    for (const provider of [noCapability, tooSmall, otherGpu, draining, paused]) {
      expect(await openJobIds(market, provider)).not.toContain(job.job_id)
      expect(errorOf(await send(market, 'POST', `/providers/${provider.pk}/jobs/${job.job_id}/lease`, {key: provider.agent, body: {}}))).toEqual({status: 409, code: 'not_eligible'})
    }
    // The end of draining is one heartbeat away.
    await heartbeat(market, draining, {capacity: gpu})
    expect(await openJobIds(market, draining)).toContain(job.job_id)
  })

  it('counts active leases and contracts against the stake tier (§8): the unstaked tier gets 2 at once', async () => {
    const provider = await jobProvider(market, {stake: '0'})
    const offeringId = await createOffering(market, provider)
    const contractId = await createContract(market, offeringId, generateKeyPair())
    const provisioning = await send(market, 'PUT', `/providers/${provider.pk}/contracts/${contractId}/provisioning`, {key: provider.agent, body: {status: 'provisioning'}})
    expect(provisioning.status).toBe(200)
    const [first, second] = [await quantumJob({collateral: '0'}), await quantumJob({collateral: '0'})]
    await lease(market, provider, first.job_id)
    expect(await openJobIds(market, provider)).not.toContain(second.job_id)
    expect(errorOf(await send(market, 'POST', `/providers/${provider.pk}/jobs/${second.job_id}/lease`, {key: provider.agent, body: {}}))).toEqual({status: 409, code: 'tier_limit'})
  })

  it('counts active leases against the contracts it hands out too: two leases fill the unstaked tier', async () => {
    const provider = await jobProvider(market, {stake: '0'})
    const offeringId = await createOffering(market, provider)
    const contractId = await createContract(market, offeringId, generateKeyPair())
    for (const job of [await quantumJob({collateral: '0'}), await quantumJob({collateral: '0'})]) await lease(market, provider, job.job_id)
    const pending = await send(market, 'GET', `/providers/${provider.pk}/contracts/pending-provision`, {key: provider.agent})
    expect(pending.body).toEqual({contracts: [], tier_limited: 1})
    const starting = await send(market, 'PUT', `/providers/${provider.pk}/contracts/${contractId}/provisioning`, {key: provider.agent, body: {status: 'provisioning'}})
    expect(errorOf(starting)).toEqual({status: 409, code: 'tier_limit'})
  })

  it('wants the agent permissions: fetch_jobs to list, run_jobs to lease; never the main key', async () => {
    const provider = await jobProvider(market)
    const job = await quantumJob()
    expect(errorOf(await send(market, 'GET', `/providers/${provider.pk}/jobs/open`, {key: provider.main}))).toEqual({status: 403, code: 'permission_denied'})
    expect(errorOf(await send(market, 'POST', `/providers/${provider.pk}/jobs/${job.job_id}/lease`, {key: provider.main, body: {}}))).toEqual({status: 403, code: 'permission_denied'})
    const other = await jobProvider(market)
    expect(errorOf(await send(market, 'GET', `/providers/${provider.pk}/jobs/open`, {key: other.agent}))).toEqual({status: 403, code: 'wrong_provider'})
  })
})

describe('§12 leases and collateral', () => {
  it('one active lease per job; the collateral is locked out of the stake and can\'t be unstaked', async () => {
    const [holder, late] = [await jobProvider(market, {stake: '100'}), await jobProvider(market)]
    const job = await quantumJob({collateral: '60'})
    const leased = await lease(market, holder, job.job_id)
    expect(leased).toMatchObject({job_id: job.job_id, agent_pubkey: Buffer.from(holder.agent.publicKey).toString('hex'), status: 'active', deadline: job.deadline})
    expect(leased.job).toMatchObject({job_id: job.job_id, status: 'leased', attempts_left: 2})
    expect(leased.expires_at).toBe(leased.leased_at + 60_000)
    expect(await stakeOf(market, holder)).toMatchObject({staked: '100', locked: '60'})
    expect(errorOf(await send(market, 'POST', `/providers/${late.pk}/jobs/${job.job_id}/lease`, {key: late.agent, body: {}}))).toEqual({status: 409, code: 'leased'})
    expect(await openJobIds(market, late)).not.toContain(job.job_id)
    expect(errorOf(await send(market, 'POST', `/providers/${holder.pk}/unstake`, {key: holder.main, body: {amount: '41'}}))).toEqual({status: 409, code: 'insufficient_stake'})
    expect((await send(market, 'POST', `/providers/${holder.pk}/unstake`, {key: holder.main, body: {amount: '40'}})).status).toBe(200)
    const active = await jobsApi(market, holder).leases('active')
    expect(active.map((item) => item.lease_id)).toEqual([leased.lease_id])
    expect(active[0]?.job?.program.digest).toBe(ghzDigest)
  })

  it('refuses a lease without enough unlocked stake (409 insufficient_stake), and a closed job (409 job_closed)', async () => {
    const poor = await jobProvider(market, {stake: '5'})
    const job = await quantumJob({collateral: '10'})
    expect(errorOf(await send(market, 'POST', `/providers/${poor.pk}/jobs/${job.job_id}/lease`, {key: poor.agent, body: {}}))).toEqual({status: 409, code: 'insufficient_stake'})
    expect(await stakeOf(market, poor)).toMatchObject({staked: '5', locked: '0'})
    const renter = generateKeyPair()
    const cancelled = await createJob(market, renter, jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT))
    expect((await send(market, 'POST', `/jobs/${cancelled.job_id}/cancel`, {key: renter})).status).toBe(200)
    const rich = await jobProvider(market)
    expect(errorOf(await send(market, 'POST', `/providers/${rich.pk}/jobs/${cancelled.job_id}/lease`, {key: rich.agent, body: {}}))).toEqual({status: 409, code: 'job_closed'})
    expect(errorOf(await send(market, 'POST', `/providers/${rich.pk}/jobs/${'0'.repeat(32)}/lease`, {key: rich.agent, body: {}}))).toEqual({status: 404, code: 'not_found'})
  })

  it('an accepted result unlocks the collateral and credits the reward to rewards_pending (§8)', async () => {
    const provider = await jobProvider(market, {stake: '100'})
    const job = await quantumJob({collateral: '30', reward: {mode: 'fixed', amount: '2.75'}})
    const leased = await lease(market, provider, job.job_id)
    const verdict = await submit(market, provider, leased.lease_id, envelope(leased, honestOutput(), provider.agent))
    expect(verdict.body).toEqual({verdict: 'accepted', reward: '2.75'})
    expect(await stakeOf(market, provider)).toMatchObject({staked: '100', locked: '0', rewards_pending: '2.75'})
    const claimed = await send<{claimed: string}>(market, 'POST', `/providers/${provider.pk}/rewards/claim`, {key: provider.main})
    expect(claimed.body.claimed).toBe('2.75')
  })

  it('fail: the collateral comes back and the job opens again while attempts remain, then fails', async () => {
    const provider = await jobProvider(market, {stake: '100'})
    const job = await quantumJob({max_attempts: 2, collateral: '10'})
    const first = await lease(market, provider, job.job_id)
    const failed = await send<LeaseAnswer>(market, 'POST', `/providers/${provider.pk}/leases/${first.lease_id}/fail`, {key: provider.agent, body: {reason: 'out of disk', retryable: true}})
    expect(failed.body).toMatchObject({status: 'failed', reason: 'out of disk'})
    expect(await stakeOf(market, provider)).toMatchObject({staked: '100', locked: '0'})
    expect(await openJobIds(market, provider)).toContain(job.job_id)
    expect(errorOf(await send(market, 'POST', `/providers/${provider.pk}/leases/${first.lease_id}/fail`, {key: provider.agent, body: {reason: 'again', retryable: true}}))).toEqual({
      status: 409,
      code: 'invalid_transition',
    })
    const second = await lease(market, provider, job.job_id)
    expect(second.job.attempts_left).toBe(0)
    await send(market, 'POST', `/providers/${provider.pk}/leases/${second.lease_id}/fail`, {key: provider.agent, body: {reason: 'still no disk', retryable: true}})
    const renterView = await send<JobAnswer>(market, 'GET', `/jobs/${job.job_id}`, {key: provider.main})
    expect(renterView.body).toMatchObject({status: 'failed', status_reason: 'no_attempts_left'})
  })

  it('a lease failed as not retryable is not offered to that provider again, but to others', async () => {
    const [refusing, other] = [await jobProvider(market), await jobProvider(market)]
    const job = await quantumJob()
    const leased = await lease(market, refusing, job.job_id)
    await send(market, 'POST', `/providers/${refusing.pk}/leases/${leased.lease_id}/fail`, {key: refusing.agent, body: {reason: 'no such image', retryable: false}})
    expect(await openJobIds(market, refusing)).not.toContain(job.job_id)
    expect(await openJobIds(market, other)).toContain(job.job_id)
  })

  it('cancel: only the requester, only an open job', async () => {
    const renter = generateKeyPair()
    const job = await createJob(market, renter, jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT))
    expect(errorOf(await send(market, 'POST', `/jobs/${job.job_id}/cancel`, {key: generateKeyPair()}))).toEqual({status: 403, code: 'permission_denied'})
    const provider = await jobProvider(market)
    await lease(market, provider, job.job_id)
    expect(errorOf(await send(market, 'POST', `/jobs/${job.job_id}/cancel`, {key: renter}))).toEqual({status: 409, code: 'invalid_transition'})
    const open = await createJob(market, renter, jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT))
    const cancelled = await send<JobAnswer>(market, 'POST', `/jobs/${open.job_id}/cancel`, {key: renter})
    expect(cancelled.body.status).toBe('cancelled')
    expect(await openJobIds(market, provider)).not.toContain(open.job_id)
  })

  it('GET /jobs/{id}: the requester and a leasing provider\'s main key; nobody else', async () => {
    const renter = generateKeyPair()
    const job = await createJob(market, renter, jobBody('quantum_circuit', ghzDigest, QUANTUM_INPUT))
    const provider = await jobProvider(market)
    expect(errorOf(await send(market, 'GET', `/jobs/${job.job_id}`, {key: provider.main}))).toEqual({status: 403, code: 'permission_denied'})
    const leased = await lease(market, provider, job.job_id)
    await submit(market, provider, leased.lease_id, envelope(leased, honestOutput(), provider.agent))
    const byRenter = await send<JobAnswer & {requester_pubkey?: string}>(market, 'GET', `/jobs/${job.job_id}`, {key: renter})
    expect(byRenter.body).toMatchObject({status: 'completed', verdict: {verdict: 'accepted', reward: '2.5'}, result: {lease_id: leased.lease_id}})
    const byProvider = await send<JobAnswer & {requester_pubkey?: string}>(market, 'GET', `/jobs/${job.job_id}`, {key: provider.main})
    expect(byProvider.body).toMatchObject({status: 'completed', verdict: {verdict: 'accepted'}})
    // The requester's key is the requester's business: a provider can't tell whose job (or which trap) it ran.
    expect(byProvider.body.requester_pubkey).toBeUndefined()
    expect(errorOf(await send(market, 'GET', `/jobs/${job.job_id}`, {key: generateKeyPair()}))).toEqual({status: 403, code: 'permission_denied'})
    const output = await send(market, 'GET', `/jobs/${job.job_id}/output`, {key: generateKeyPair()})
    expect(output.status).toBe(403)
  })

  it('the input goes to a provider the job is offered to or that leased it', async () => {
    const job = await quantumJob()
    const [offered, refused] = [await jobProvider(market), await jobProvider(market, {capabilities: ['job:container']})]
    expect((await jobsApi(market, offered).input(job.job_id)).toString()).toBe(QUANTUM_INPUT)
    await expect(jobsApi(market, refused).input(job.job_id)).rejects.toMatchObject({status: 404})
  })
})

describe('§12 time: renewals, expiry by timer and on access, deadlines', () => {
  let timeMarket: Devnet
  let digest: string

  beforeAll(async () => {
    timeMarket = await startDevnet()
    digest = await uploadProgram(timeMarket, generateKeyPair(), Buffer.from(GHZ_3))
  })
  afterAll(() => timeMarket.stop())

  const job = (overrides: Record<string, unknown> = {}) => createJob(timeMarket, generateKeyPair(), jobBody('quantum_circuit', digest, QUANTUM_INPUT, overrides))

  it('renews to min(now + lease_seconds, deadline); after expiry 410 lease_expired', async () => {
    const provider = await jobProvider(timeMarket)
    const created = await job({deadline_seconds: 100, lease_seconds: 60})
    const leased = await lease(timeMarket, provider, created.job_id)
    timeMarket.clock.advance(50_000)
    const renewed = await send<LeaseAnswer>(timeMarket, 'PUT', `/providers/${provider.pk}/leases/${leased.lease_id}`, {key: provider.agent})
    expect(renewed.status).toBe(200)
    expect(renewed.body.expires_at).toBe(created.deadline)
    timeMarket.clock.advance(50_001)
    expect(errorOf(await send(timeMarket, 'PUT', `/providers/${provider.pk}/leases/${leased.lease_id}`, {key: provider.agent}))).toEqual({status: 410, code: 'lease_expired'})
    const output = Buffer.from(JSON.stringify(simulate(GHZ_3, 200)))
    expect(errorOf(await submit(timeMarket, provider, leased.lease_id, envelope(leased, output, provider.agent)))).toEqual({status: 410, code: 'lease_expired'})
  })

  it('expires on access: half the collateral is forfeited, the job opens again and another provider completes it', async () => {
    const [first, second] = [await jobProvider(timeMarket, {stake: '100'}), await jobProvider(timeMarket)]
    const created = await job({collateral: '20', lease_seconds: 30})
    const leased = await lease(timeMarket, first, created.job_id)
    timeMarket.clock.advance(30_000)
    const leases = await send<{leases: LeaseAnswer[]}>(timeMarket, 'GET', `/providers/${first.pk}/leases?status=expired`, {key: first.agent})
    expect(leases.body.leases.map((item) => item.lease_id)).toContain(leased.lease_id)
    expect(await stakeOf(timeMarket, first)).toMatchObject({staked: '90', locked: '0'})
    expect(await openJobIds(timeMarket, second)).toContain(created.job_id)
    const again = await lease(timeMarket, second, created.job_id)
    expect(again.job.attempts_left).toBe(1)
    const verdict = await submit(timeMarket, second, again.lease_id, envelope(again, Buffer.from(JSON.stringify(simulate(GHZ_3, 200))), second.agent))
    expect(verdict.body.verdict).toBe('accepted')
  })

  it('an open job past its deadline fails', async () => {
    const renter = generateKeyPair()
    const created = await createJob(timeMarket, renter, jobBody('quantum_circuit', digest, QUANTUM_INPUT, {deadline_seconds: 10}))
    timeMarket.clock.advance(10_000)
    const shown = await send<JobAnswer>(timeMarket, 'GET', `/jobs/${created.job_id}`, {key: renter})
    expect(shown.body).toMatchObject({status: 'failed', status_reason: 'deadline_passed'})
  })
})

describe('§12 long poll and expiry by timer (real clock)', () => {
  let liveMarket: Devnet
  let digest: string
  const polls: Promise<unknown>[] = []

  beforeAll(async () => {
    liveMarket = await startDevnet()
    digest = await uploadProgram(liveMarket, generateKeyPair(), Buffer.from(GHZ_3))
  })
  afterEach(async () => {
    await Promise.all(polls.splice(0))
  })
  afterAll(() => liveMarket.stop())

  it('a waiting jobs/open answers when a job it may take is created', async () => {
    const provider = await jobProvider(liveMarket)
    const waiting = openJobIds(liveMarket, provider, 30)
    polls.push(waiting)
    const renter = generateKeyPair()
    const created = await createJob(liveMarket, renter, jobBody('quantum_circuit', digest, QUANTUM_INPUT))
    expect(await waiting).toContain(created.job_id)
    await send(liveMarket, 'POST', `/jobs/${created.job_id}/cancel`, {key: renter})
  })

  it('a lease nobody renews expires by the timer, and the job wakes another provider\'s long poll', async () => {
    const [sleeper, waiter] = [await jobProvider(liveMarket), await jobProvider(liveMarket)]
    const created = await createJob(liveMarket, generateKeyPair(), jobBody('quantum_circuit', digest, QUANTUM_INPUT, {lease_seconds: 1}))
    const leased = await lease(liveMarket, sleeper, created.job_id)
    // Leased: nothing to offer; the expiry one second later is the timer's, with no request to trigger it.
    const reopened = await openJobIds(liveMarket, waiter, 30)
    expect(reopened).toContain(created.job_id)
    const expired = await send<{leases: LeaseAnswer[]}>(liveMarket, 'GET', `/providers/${sleeper.pk}/leases`, {key: sleeper.agent})
    expect(expired.body.leases.find((item) => item.lease_id === leased.lease_id)?.status).toBe('expired')
  })
})

describe('§12 SLA', () => {
  it('sums a provider\'s leases: accepted, rejected, expired, failed, on time, latency', async () => {
    const slaMarket = await startDevnet()
    try {
      const digest = await uploadProgram(slaMarket, generateKeyPair(), Buffer.from(GHZ_3))
      const provider = await jobProvider(slaMarket)
      const make = () => createJob(slaMarket, generateKeyPair(), jobBody('quantum_circuit', digest, QUANTUM_INPUT, {lease_seconds: 60}))
      const good = await lease(slaMarket, provider, (await make()).job_id)
      slaMarket.clock.advance(2000)
      await submit(slaMarket, provider, good.lease_id, envelope(good, Buffer.from(JSON.stringify(simulate(GHZ_3, 200))), provider.agent))
      const bad = await lease(slaMarket, provider, (await make()).job_id)
      await submit(slaMarket, provider, bad.lease_id, envelope(bad, Buffer.from('{"counts": {"0": 200}}'), provider.agent))
      const failing = await lease(slaMarket, provider, (await make()).job_id)
      await send(slaMarket, 'POST', `/providers/${provider.pk}/leases/${failing.lease_id}/fail`, {key: provider.agent, body: {reason: 'x', retryable: true}})
      await lease(slaMarket, provider, (await make()).job_id)
      slaMarket.clock.advance(60_000)
      const sla = await send(slaMarket, 'GET', `/providers/${provider.pk}/sla?days=30`)
      expect(sla.status).toBe(200)
      const latency = (sla.body as {latency_ms: {p50: number; p95: number}}).latency_ms
      expect(sla.body).toEqual({
        days: 30,
        leases: 4,
        accepted: 1,
        rejected: 1,
        expired: 1,
        failed: 1,
        on_time_percent: 50,
        latency_ms: {p50: latency.p50, p95: latency.p50},
        traps: {passed: 0, failed: 0},
      })
      // The clock moved 2 s between the lease and the result, plus the requests' own time.
      expect(latency.p50).toBeGreaterThanOrEqual(2000)
      expect(await jobsApi(slaMarket, provider).sla(30)).toMatchObject({accepted: 1, rejected: 1})
    } finally {
      await slaMarket.stop()
    }
  })
})
