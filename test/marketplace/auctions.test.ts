import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {bidCommitment, newBidSalt} from '../../src/core/auction.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {errorOf, pub, send, type Provider} from '../support/harness.js'
import {createJob, envelope, GHZ_3, jobBody, jobProvider, jobsApi, lease, openJobIds, simulate, stakeOf, submit, uploadProgram, type JobAnswer} from './job-fixtures.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/** PROTOCOL §13 sealed-bid auctions on the reference marketplace: commit, reveal, the Vickrey outcome, the winner's lease. */

const INPUT = '{"shots": 100, "seed": 5}'

let market: Devnet
let digest: string

beforeAll(async () => {
  market = await startDevnet()
  digest = await uploadProgram(market, generateKeyPair(), Buffer.from(GHZ_3))
})
afterAll(() => market.stop())

const auctionJob = (overrides: Record<string, unknown> = {}) =>
  createJob(market, generateKeyPair(), jobBody('quantum_circuit', digest, INPUT, {reward: {mode: 'auction', max_fee: '10'}, bid_seconds: 60, reveal_seconds: 60, ...overrides}))

interface Bid {
  provider: Provider
  fee: string
  salt: string
}

async function commit(job: JobAnswer, provider: Provider, fee: string): Promise<Bid> {
  const salt = newBidSalt()
  const answer = await send(market, 'POST', `/providers/${provider.pk}/jobs/${job.job_id}/commitments`, {key: provider.agent, body: {commitment: bidCommitment(job.job_id, provider.pk, fee, salt)}})
  expect(answer.status, JSON.stringify(answer.body)).toBe(201)
  return {provider, fee, salt}
}

const reveal = (job: JobAnswer, bid: Bid, fee = bid.fee, salt = bid.salt) =>
  send(market, 'POST', `/providers/${bid.provider.pk}/jobs/${job.job_id}/reveals`, {key: bid.provider.agent, body: {fee, salt}})

const auction = async (jobId: string) => (await send<{phase: string; bids: unknown[]; reveals: {provider_pubkey: string; fee?: string}[]; winner?: string; clearing_fee?: string}>(market, 'GET', `/jobs/${jobId}/auction`)).body

describe('§13 sealed-bid auctions', () => {
  it('three bidders: the lowest fee wins, is paid the second lowest, and alone may lease the job', async () => {
    const [a, b, c] = [await jobProvider(market), await jobProvider(market), await jobProvider(market)]
    const job = await auctionJob()
    expect(job).toMatchObject({reward: {mode: 'auction', max_fee: '10'}, bid_closes_at: expect.any(Number), reveal_closes_at: expect.any(Number)})
    expect(job.reveal_closes_at! - job.bid_closes_at!).toBe(60_000)
    for (const provider of [a, b, c]) expect(await openJobIds(market, provider)).toContain(job.job_id)
    const bids = [await commit(job, a, '5'), await commit(job, b, '3'), await commit(job, c, '4.5')]
    // Listed to whom has something to do: a provider that committed is not offered the job again while bidding.
    expect(await openJobIds(market, a)).not.toContain(job.job_id)
    expect(await auction(job.job_id)).toMatchObject({phase: 'bidding', reveals: []})
    expect((await auction(job.job_id)).bids).toHaveLength(3)
    expect(errorOf(await reveal(job, bids[1]!))).toEqual({status: 409, code: 'bidding_open'})
    expect(errorOf(await send(market, 'POST', `/providers/${a.pk}/jobs/${job.job_id}/lease`, {key: a.agent, body: {}}))).toEqual({status: 409, code: 'auction_open'})

    market.clock.advance(60_000)
    expect(errorOf(await send(market, 'POST', `/providers/${a.pk}/jobs/${job.job_id}/commitments`, {key: a.agent, body: {commitment: 'ab'.repeat(32)}}))).toEqual({
      status: 409,
      code: 'bidding_closed',
    })
    expect(await openJobIds(market, a)).toContain(job.job_id)
    for (const bid of bids) expect((await reveal(job, bid)).status).toBe(200)
    expect(await openJobIds(market, a)).not.toContain(job.job_id)
    const revealing = await auction(job.job_id)
    expect(revealing.phase).toBe('revealing')
    // Sealed until the end: who revealed is public, the fees are not yet.
    expect(revealing.reveals.map((item) => item.fee)).toEqual([undefined, undefined, undefined])

    market.clock.advance(60_000)
    expect(errorOf(await reveal(job, bids[0]!))).toEqual({status: 409, code: 'reveal_closed'})
    expect(await auction(job.job_id)).toMatchObject({phase: 'closed', winner: b.pk, clearing_fee: '4.5'})
    expect(await openJobIds(market, b)).toContain(job.job_id)
    expect(await openJobIds(market, a)).not.toContain(job.job_id)
    expect(errorOf(await send(market, 'POST', `/providers/${c.pk}/jobs/${job.job_id}/lease`, {key: c.agent, body: {}}))).toEqual({status: 409, code: 'not_winner'})
    const leased = await lease(market, b, job.job_id)
    expect(leased.job.reward).toEqual({mode: 'auction', max_fee: '10', amount: '4.5'})
    const verdict = await submit(market, b, leased.lease_id, envelope(leased, Buffer.from(JSON.stringify(simulate(GHZ_3, 100))), b.agent))
    expect(verdict.body).toEqual({verdict: 'accepted', reward: '4.5'})
    expect((await stakeOf(market, b)).rewards_pending).toBe('4.5')
  })

  it('checks reveals: the commitment (422), the max fee (409); a later commitment replaces the earlier', async () => {
    const [a, b] = [await jobProvider(market), await jobProvider(market)]
    const job = await auctionJob()
    const first = await commit(job, a, '2')
    const replaced = await commit(job, a, '6')
    const high = await commit(job, b, '11')
    market.clock.advance(60_000)
    expect(errorOf(await reveal(job, first))).toEqual({status: 422, code: 'commitment_mismatch'})
    expect(errorOf(await reveal(job, replaced, '6.5'))).toEqual({status: 422, code: 'commitment_mismatch'})
    expect(errorOf(await reveal(job, replaced, replaced.fee, newBidSalt()))).toEqual({status: 422, code: 'commitment_mismatch'})
    expect(errorOf(await reveal(job, high))).toEqual({status: 409, code: 'fee_above_max'})
    expect((await reveal(job, replaced)).body).toMatchObject({fee: '6'})
    expect((await reveal(job, replaced)).status).toBe(200)
    const stranger = await jobProvider(market)
    expect(errorOf(await reveal(job, {provider: stranger, fee: '1', salt: newBidSalt()}))).toEqual({status: 409, code: 'no_commitment'})
    market.clock.advance(60_000)
    // Alone among the reveals: paid its own fee.
    expect(await auction(job.job_id)).toMatchObject({phase: 'closed', winner: a.pk, clearing_fee: '6'})
  })

  it('a tie goes to the earliest reveal; an unrevealed commitment counts as failed in the SLA', async () => {
    const [early, late, silent] = [await jobProvider(market), await jobProvider(market), await jobProvider(market)]
    const job = await auctionJob()
    const lateBid = await commit(job, late, '3')
    const earlyBid = await commit(job, early, '3')
    await commit(job, silent, '1')
    market.clock.advance(60_000)
    await reveal(job, earlyBid)
    await reveal(job, lateBid)
    market.clock.advance(60_000)
    expect(await auction(job.job_id)).toMatchObject({winner: early.pk, clearing_fee: '3'})
    const sla = await jobsApi(market, silent).sla()
    expect(sla).toMatchObject({leases: 0, failed: 1})
    expect((await jobsApi(market, early).sla()).failed).toBe(0)
  })

  it('nobody revealed: the job fails; a job that is not an auction has no auction', async () => {
    const provider = await jobProvider(market)
    const renter = generateKeyPair()
    const job = await createJob(market, renter, jobBody('quantum_circuit', digest, INPUT, {reward: {mode: 'auction', max_fee: '10'}, bid_seconds: 10, reveal_seconds: 10}))
    await commit(job, provider, '1')
    market.clock.advance(20_000)
    expect((await send<JobAnswer>(market, 'GET', `/jobs/${job.job_id}`, {key: renter})).body).toMatchObject({status: 'failed', status_reason: 'no_reveals'})
    const fixed = await createJob(market, renter, jobBody('quantum_circuit', digest, INPUT))
    expect(errorOf(await send(market, 'GET', `/jobs/${fixed.job_id}/auction`))).toEqual({status: 404, code: 'not_found'})
    expect(errorOf(await send(market, 'POST', `/providers/${provider.pk}/jobs/${fixed.job_id}/commitments`, {key: provider.agent, body: {commitment: 'ab'.repeat(32)}}))).toEqual({
      status: 404,
      code: 'not_found',
    })
  })

  it('a provider that may not run the job can\'t bid on it', async () => {
    const unfit = await jobProvider(market, {capabilities: ['job:zk_proof']})
    const job = await auctionJob()
    expect(errorOf(await send(market, 'POST', `/providers/${unfit.pk}/jobs/${job.job_id}/commitments`, {key: unfit.agent, body: {commitment: 'ab'.repeat(32)}}))).toEqual({
      status: 409,
      code: 'not_eligible',
    })
  })
})

describe('§13 by the timer (real clock), through the client calls', () => {
  let live: Devnet
  let liveDigest: string

  beforeAll(async () => {
    live = await startDevnet()
    liveDigest = await uploadProgram(live, generateKeyPair(), Buffer.from(GHZ_3))
  })
  afterAll(() => live.stop())

  it('the auction closes on its own and the winner\'s waiting long poll gets the job', async () => {
    const [winner, loser] = [await jobProvider(live), await jobProvider(live)]
    const job = await createJob(live, generateKeyPair(), jobBody('quantum_circuit', liveDigest, INPUT, {reward: {mode: 'auction', max_fee: '10'}, bid_seconds: 1, reveal_seconds: 1}))
    const bids = [
      {provider: winner, fee: '2', salt: newBidSalt()},
      {provider: loser, fee: '7', salt: newBidSalt()},
    ]
    for (const bid of bids) await jobsApi(live, bid.provider).commit(job.job_id, bidCommitment(job.job_id, bid.provider.pk, bid.fee, bid.salt))
    // Wait for the reveal window as an agent would: until bid_closes_at by the server's clock.
    while (live.clock.now() < (job.bid_closes_at ?? 0)) await new Promise((resolve) => setTimeout(resolve, 50))
    for (const bid of bids) expect(await jobsApi(live, bid.provider).reveal(job.job_id, bid.fee, bid.salt)).toMatchObject({fee: bid.fee})
    const offered = await jobsApi(live, winner).openJobs(30)
    expect(offered.map((item) => item.job_id)).toContain(job.job_id)
    expect(await jobsApi(live, loser).auction(job.job_id)).toMatchObject({phase: 'closed', winner: pub(winner.main), clearing_fee: '7'})
  })
})
