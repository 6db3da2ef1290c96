import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'

import {computeWorkDigest} from '../../src/core/benchmark-workload.js'
import {generateKeyPair, randomHex} from '../../src/core/signing.js'
import {createContract, createOffering, errorOf, registerProvider, send, signedHeaders, type Provider} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/** The devnet under abuse (issue 15, items 10 and 11): every limit refuses with 429 and Retry-After, or bounds storage. */

const markets: Devnet[] = []
async function market(options: Parameters<typeof startDevnet>[0] = {}): Promise<Devnet> {
  const started = await startDevnet(options)
  markets.push(started)
  return started
}
afterEach(async () => {
  await Promise.all(markets.splice(0).map((started) => started.stop()))
})

const heartbeat = {version: '0.1.0', provisioner_type: 'local', capabilities: [], active_contracts: 0}
const retryAfter = (answer: {headers: Headers}) => Number(answer.headers.get('retry-after'))
const nonceRows = (target: Devnet) => target.server.db.prepare<[], number>('SELECT count(*) FROM nonce_log').pluck().get() ?? 0

describe('rate limits', () => {
  it('per address, before any signature: a flood signed by many fresh keys is refused with 429 and Retry-After', async () => {
    // One a second, a burst of two: of 20 requests sent at once, at most a handful get through however slow the machine.
    const limited = await market({addressRateLimitPerSecond: 1})
    // Each request from its own key: a per-key limit alone would let all of them through.
    const headers = Array.from({length: 20}, () => signedHeaders(limited, generateKeyPair(), 'GET', '/offerings'))
    const started = performance.now()
    const answers = await Promise.all(headers.map((signed) => send(limited, 'GET', '/offerings', {headers: signed})))
    // A refusal itself waits out (up to 1 s of) its Retry-After: asking again at once gains nothing.
    expect(performance.now() - started).toBeGreaterThanOrEqual(900)
    const refused = answers.filter((answer) => answer.status === 429)
    expect(refused.length).toBeGreaterThanOrEqual(10)
    expect(errorOf(refused[0]!)).toEqual({status: 429, code: 'rate_limited'})
    expect(retryAfter(refused[0]!)).toBeGreaterThanOrEqual(1)
  })

  it('stores no nonce for a key the route refuses (401 unknown_key), only for requests it accepts', async () => {
    const own = await market()
    const provider = await registerProvider(own)
    const before = nonceRows(own)
    for (let index = 0; index < 10; index++) {
      const answer = await send(own, 'POST', `/providers/${provider.pk}/heartbeat`, {key: generateKeyPair(), body: heartbeat})
      expect(errorOf(answer)).toEqual({status: 401, code: 'unknown_key'})
    }
    // GET /orders takes an agent key: an unknown key is refused before its nonce is stored, like a provider route.
    expect(errorOf(await send(own, 'GET', '/orders', {key: generateKeyPair()}))).toEqual({status: 401, code: 'unknown_key'})
    expect(nonceRows(own)).toBe(before)
    expect((await send(own, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat})).status).toBe(200)
    expect(nonceRows(own)).toBe(before + 1)
  })

  it('bounds the nonce store: when full, a signed request waits (429) until the oldest nonces age out; a replay is still refused', async () => {
    const own = await market({maxNonces: 6})
    const provider = await registerProvider(own)
    const nonce = randomHex(16)
    const timestamp = own.clock.now()
    while (nonceRows(own) < 5) expect((await send(own, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat})).status).toBe(200)
    expect((await send(own, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat, nonce, timestamp})).status).toBe(200)
    const full = await send(own, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat})
    expect(errorOf(full)).toEqual({status: 429, code: 'rate_limited'})
    expect(retryAfter(full)).toBeGreaterThan(500)
    expect(errorOf(await send(own, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat, nonce, timestamp}))).toMatchObject({status: 429})
    own.clock.advance(601_000)
    expect((await send(own, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body: heartbeat})).status).toBe(200)
    expect(nonceRows(own)).toBe(1)
  })
})

describe('held long polls', () => {
  /** A held GET /orders?wait=30 that can be ended from here (its client goes away). */
  function hold(target: Devnet, provider: Provider): {answer: Promise<{status: number}>; end: () => void} {
    const ended = new AbortController()
    const answer = send(target, 'GET', '/orders?wait=30', {key: provider.agent, signal: ended.signal}).catch(() => ({status: 0}))
    return {answer, end: () => ended.abort()}
  }

  async function heldCount(target: Devnet, count: number): Promise<void> {
    for (let tries = 0; tries < 200 && target.server.heldLongPolls !== count; tries++) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(target.server.heldLongPolls).toBe(count)
  }

  it('caps them per key and in total with 429 and Retry-After; an answer given at once takes no place', async () => {
    const own = await market({maxLongPollsPerKey: 1, maxLongPolls: 2})
    const [first, second, third] = [await registerProvider(own), await registerProvider(own), await registerProvider(own)]
    const held = [hold(own, first)]
    await heldCount(own, 1)
    const again = await send(own, 'GET', '/orders?wait=30', {key: first.agent})
    expect(errorOf(again)).toEqual({status: 429, code: 'rate_limited'})
    expect(retryAfter(again)).toBeGreaterThanOrEqual(1)
    expect((await send(own, 'GET', '/orders?wait=0', {key: first.agent})).status).toBe(200)

    held.push(hold(own, second))
    await heldCount(own, 2)
    expect(errorOf(await send(own, 'GET', '/orders?wait=30', {key: third.agent}))).toEqual({status: 429, code: 'rate_limited'})
    const pendingPoll = await send(own, 'GET', `/providers/${third.pk}/contracts/pending-provision?wait=30`, {key: third.agent})
    expect(errorOf(pendingPoll)).toEqual({status: 429, code: 'rate_limited'})

    // A client that goes away gives its place back.
    held[0]!.end()
    await heldCount(own, 1)
    held.push(hold(own, third))
    await heldCount(own, 2)
    for (const poll of held) poll.end()
    await Promise.all(held.map((poll) => poll.answer))
    await heldCount(own, 0)
  })
})

describe('outpost devnet start (built CLI) takes the limits as flags', () => {
  it('--max-long-polls-per-key', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'outpost-devnet-limits-'))
    const devnet = await startDevnet({dataDir: dataDir, process: {args: ['--max-long-polls-per-key', '1']}})
    try {
      const provider = await registerProvider(devnet)
      // Two polls at once by one key: one is held, the other refused at once.
      const ended = new AbortController()
      const polls = [0, 1].map(() => send(devnet, 'GET', '/orders?wait=30', {key: provider.agent, signal: ended.signal}))
      const first = await Promise.race(polls)
      expect(errorOf(first)).toEqual({status: 429, code: 'rate_limited'})
      ended.abort()
      await Promise.allSettled(polls)
    } finally {
      devnet.child.kill('SIGTERM')
      await devnet.exited
      rmSync(dataDir, {recursive: true, force: true})
    }
  })
})

describe('GET /orders: a cursor and a page size', () => {
  it('pages through the open orders oldest first, and a long poll after the cursor waits for a new one', async () => {
    const own = await market()
    const provider = await registerProvider(own)
    const renter = generateKeyPair()
    const openOrder = async () => {
      const body = {requirements: {cpu_cores: 1, memory_mb: 512, storage_gb: 5}, max_price_per_hour: '1', duration_hours: 1, closes_in_seconds: 600, ssh_pubkey: 'ssh-ed25519 AAAA x'}
      return (await send<{order_id: string}>(own, 'POST', '/orders', {key: renter, body})).body.order_id
    }
    const ids = [await openOrder(), await openOrder(), await openOrder(), await openOrder(), await openOrder()]
    type Page = {orders: {order_id: string}[]; next_cursor: string}
    const page = async (query: string) => (await send<Page>(own, 'GET', `/orders?status=open${query}`, {key: provider.agent})).body
    const seen: string[] = []
    let cursor: string | undefined
    for (;;) {
      const next = await page(`&limit=2${cursor === undefined ? '' : `&cursor=${cursor}`}`)
      seen.push(...next.orders.map((order) => order.order_id))
      cursor = next.next_cursor
      if (next.orders.length < 2) break
    }
    expect(seen).toEqual(ids)
    expect((await page('')).orders).toHaveLength(5)

    const waiting = send<Page>(own, 'GET', `/orders?status=open&wait=10&cursor=${cursor}`, {key: provider.agent})
    const newest = await openOrder()
    const answer = await waiting
    expect(answer.body.orders.map((order) => order.order_id)).toEqual([newest])
    expect(Number(answer.body.next_cursor)).toBeGreaterThan(Number(cursor))

    for (const bad of ['cursor=abc', 'limit=0', 'limit=501']) {
      expect(errorOf(await send(own, 'GET', `/orders?${bad}`, {key: provider.agent}))).toEqual({status: 400, code: 'invalid_query'})
    }
  })
})

describe('health-check storage', () => {
  it('keeps at most the cap per contract, refuses checks dated in the future and oversized details', async () => {
    const own = await market({healthChecksPerContract: 10})
    const provider = await registerProvider(own)
    const contractId = await createContract(own, await createOffering(own, provider), generateKeyPair())
    const post = (checks: unknown[]) => send(own, 'POST', `/providers/${provider.pk}/health`, {key: provider.agent, body: {checks}})
    for (let round = 0; round < 5; round++) {
      const checks = Array.from({length: 7}, (_, index) => ({contract_id: contractId, status: 'healthy', checked_at: own.clock.now() - 1000 * (round * 7 + index)}))
      expect((await post(checks)).body).toEqual({accepted: 7})
    }
    const stored = own.server.db.prepare<[string], number>('SELECT count(*) FROM health_checks WHERE contract_id = ?').pluck().get(contractId) ?? 0
    expect(stored).toBeGreaterThan(0)
    expect(stored).toBeLessThanOrEqual(10)

    const future = await post([{contract_id: contractId, status: 'healthy', checked_at: own.clock.now() + 301_000}])
    expect(future.body).toMatchObject({error: {code: 'invalid_body', details: [{field: 'checks.0.checked_at'}]}})
    const bulky = await post([{contract_id: contractId, status: 'healthy', checked_at: own.clock.now(), details: {log: 'x'.repeat(5000)}}])
    expect(bulky.body).toMatchObject({error: {code: 'invalid_body', details: [{field: 'checks.0.details'}]}})
  })
})

describe('benchmark verification (item 10)', () => {
  it('limits challenges, so verifications, per provider per hour (429 with Retry-After until the hour has passed)', async () => {
    const own = await market({benchmarkAttemptsPerHour: 3})
    const provider = await registerProvider(own)
    const challenges = `/providers/${provider.pk}/benchmarks/challenges`
    for (let index = 0; index < 3; index++) expect((await send(own, 'POST', challenges, {key: provider.agent})).status).toBe(201)
    const refused = await send(own, 'POST', challenges, {key: provider.agent})
    expect(errorOf(refused)).toEqual({status: 429, code: 'rate_limited'})
    expect(retryAfter(refused)).toBeGreaterThan(3000)
    expect(retryAfter(refused)).toBeLessThanOrEqual(3600)
    own.clock.advance(3_600_000)
    expect((await send(own, 'POST', challenges, {key: provider.agent})).status).toBe(201)
  })

  it('verifies a few reports a minute in all, refusing the rest (429) before their challenge is used up', async () => {
    const own = await market({benchmarkVerificationsPerMinute: 1})
    const [first, second] = [await registerProvider(own), await registerProvider(own)]
    const submit = async (provider: Provider) => {
      const path = `/providers/${provider.pk}/benchmarks`
      const challenge = await send<{challenge_id: string; seed: string}>(own, 'POST', `${path}/challenges`, {key: provider.agent})
      const report = {challenge_id: challenge.body.challenge_id, machine: {}, results: {}, work_digest: computeWorkDigest(challenge.body.seed)}
      return {again: () => send(own, 'POST', path, {key: provider.agent, body: report}), answer: await send(own, 'POST', path, {key: provider.agent, body: report})}
    }
    expect((await submit(first)).answer.status).toBe(201)
    const refused = await submit(second)
    expect(errorOf(refused.answer)).toEqual({status: 429, code: 'rate_limited'})
    own.clock.advance(60_000)
    expect((await refused.again()).status).toBe(201)
  })

  it('re-runs the workload off the event loop: the server goes on serving while a report is verified', async () => {
    const own = await market()
    const provider = await registerProvider(own)
    const path = `/providers/${provider.pk}/benchmarks`
    const challenge = await send<{challenge_id: string; seed: string}>(own, 'POST', `${path}/challenges`, {key: provider.agent})
    const report = {challenge_id: challenge.body.challenge_id, machine: {cpu: 'test'}, results: {}, work_digest: computeWorkDigest(challenge.body.seed)}
    const state = own.server.db.prepare<[string], {used: number | null; reports: number}>(
      'SELECT used_at AS used, (SELECT count(*) FROM benchmark_reports WHERE challenge_id = c.challenge_id) AS reports FROM benchmark_challenges c WHERE challenge_id = ?',
    )
    let done = false
    const submitted = send(own, 'POST', path, {key: provider.agent, body: report}).finally(() => (done = true))
    // This test shares the server's event loop: seeing the challenge consumed while its report is not yet written
    // means the loop ran between the two, which a verification on the loop itself would never allow.
    let sawVerifying = false
    let served = 0
    while (!done) {
      const now = state.get(challenge.body.challenge_id)
      if (now?.used !== null && now?.reports === 0) {
        sawVerifying = true
        if ((await send(own, 'GET', path)).status === 200 && !done) served++
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect((await submitted).status).toBe(201)
    expect(sawVerifying).toBe(true)
    expect(served).toBeGreaterThan(0)
  })
})
