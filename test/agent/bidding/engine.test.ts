import {describe, expect, it} from 'vitest'

import {BidEngine, type BiddingApi, type HeldContracts} from '../../../src/agent/bidding/engine.js'
import type {AgentLog} from '../../../src/agent/logger.js'
import {createMetrics} from '../../../src/agent/metrics.js'
import {ApiError} from '../../../src/core/api/api-error.js'
import type {Bid, OpenOrder, OpenOrdersPage} from '../../../src/core/api/provider.js'
import type {Contract} from '../../../src/core/api/schemas.js'
import {BiddingSection} from '../../../src/core/config/schema.js'

const id = (n: number) => n.toString(16).padStart(32, '0')
const START = Date.now()
/** Order n closes n × 10 s after a minute from the start, so each can be closed on its own by moving the clock. */
const closesAt = (n: number) => START + 60_000 + n * 10_000
const order = (n: number, cpu = 1): OpenOrder => ({
  order_id: id(n),
  requirements: {cpu_cores: cpu, memory_mb: 512, storage_gb: 1, gpu_count: 0},
  max_price_per_hour: '1',
  duration_hours: 1,
  closes_at: closesAt(n),
})
const contract = (n: number): Contract => ({
  contract_id: id(1000 + n),
  offering_id: id(n),
  product_type: 'compute',
  cpu_cores: 1,
  memory_mb: 512,
  storage_gb: 1,
  gpu_count: 0,
  requester_pubkey: 'b'.repeat(64),
  ssh_pubkey: 'ssh-ed25519 AAAA',
  created_at: Date.now(),
  status: 'accepted',
})

/**
 * A marketplace in memory, paged as the devnet is: each order gets a sequence number when it opens, a read returns
 * the open orders after the cursor, and an order closes when the clock passes its `closes_at`.
 */
class FakeMarket implements BiddingApi {
  private readonly orders: {seq: number; order: OpenOrder}[] = []
  readonly placed: {orderId: string; price: string}[] = []
  readonly outcomes = new Map<string, Bid>()
  readonly reads: {wait: number; cursor: string | undefined}[] = []
  refuse: string | undefined

  constructor(private readonly clock: {now: number}) {}

  open(...orders: OpenOrder[]): void {
    for (const entry of orders) this.orders.push({seq: this.orders.length + 1, order: entry})
  }

  async openOrdersPage(wait: number, cursor: string | undefined): Promise<OpenOrdersPage> {
    this.reads.push({wait, cursor})
    const after = Number(cursor ?? 0)
    const page = this.orders.filter((entry) => entry.seq > after && entry.order.closes_at > this.clock.now)
    return {orders: page.map((entry) => ({...entry.order})), nextCursor: String(page.at(-1)?.seq ?? after), full: false}
  }

  async placeBid(orderId: string, price: string): Promise<Bid> {
    if (this.refuse === orderId) throw new ApiError({status: 409, apiCode: 'order_closed', message: 'the order is awarded'})
    this.placed.push({orderId, price})
    return {bid_id: 'x', order_id: orderId, price_per_hour: price, status: 'open'}
  }

  async ownBid(orderId: string): Promise<Bid | undefined> {
    return this.outcomes.get(orderId) ?? (this.placed.some((bid) => bid.orderId === orderId) ? {bid_id: 'x', order_id: orderId, price_per_hour: '0.1', status: 'open'} : undefined)
  }

  /** Time passes until order n closes, with this outcome for the provider's bid. */
  close(n: number, outcome: 'won' | 'lost', contractStatus = 'accepted'): void {
    this.clock.now = Math.max(this.clock.now, closesAt(n) + 1)
    this.outcomes.set(id(n), {bid_id: 'x', order_id: id(n), price_per_hour: '0.1', status: outcome, contract_id: outcome === 'won' ? id(1000 + n) : null, contract_status: outcome === 'won' ? contractStatus : null})
  }
}

function setup(held: HeldContracts = {holding: [], provisionedIds: new Set()}, longPollWaitSeconds = 0) {
  const state = {held, now: START}
  const market = new FakeMarket(state)
  const lines: {details: Record<string, unknown>; message: string}[] = []
  const record = (details: Record<string, unknown>, message: string) => void lines.push({details, message})
  const log: AgentLog = {debug: record, info: record, warn: record, error: record}
  const metrics = createMetrics({bidding: true})
  const engine = new BidEngine({
    api: market,
    config: BiddingSection.parse({enabled: true, prices: {cpu_core: '0.1'}}),
    script: undefined,
    readCapacity: async () => ({cpuCores: 2, memoryMb: 4096, storageGb: 100, gpuCount: 0}),
    held: () => state.held,
    log,
    metrics,
    longPollWaitSeconds,
    retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1},
    now: () => state.now,
  })
  const decisions = (orderId: string) => lines.filter((line) => line.details.order_id === orderId && line.details.decision !== undefined)
  return {market, engine, lines, metrics, state, decisions, round: () => engine.round(new AbortController().signal)}
}

describe('BidEngine', () => {
  it('bids within capacity, declines the rest once, and bids again on a waiting order when a lost bid frees room', async () => {
    const {market, round, decisions, metrics} = setup()
    market.open(order(1), order(2), order(3))
    await round()
    expect(market.placed.map((bid) => bid.orderId)).toEqual([id(1), id(2)])
    expect(decisions(id(3))).toEqual([expect.objectContaining({details: expect.objectContaining({decision: 'declined', reason: 'no_free_capacity'})})])
    await round()
    expect(market.placed).toHaveLength(2)
    expect(decisions(id(1))).toHaveLength(1)

    market.close(1, 'lost')
    await round()
    expect(market.placed.map((bid) => bid.orderId)).toEqual([id(1), id(2), id(3)])
    expect(decisions(id(3)).map((line) => line.details.decision)).toEqual(['declined', 'bid'])
    const text = await metrics.registry.metrics()
    expect(text).toMatch(/outpost_agent_bid_decisions_total\{decision="bid",reason="fixed"\} 3/)
    expect(text).toMatch(/outpost_agent_bid_decisions_total\{decision="declined",reason="no_free_capacity"\} 1/)
    expect(text).toMatch(/outpost_agent_bid_outcomes_total\{outcome="lost"\} 1/)
    expect(text).toMatch(/outpost_agent_open_bids 2/)
  })

  it('keeps a won order promised until its contract is provisioned, and counts it once while held', async () => {
    const {market, round, state, metrics} = setup()
    market.open(order(1), order(2))
    await round()
    market.close(1, 'won')
    market.open(order(4))
    await round()
    // Still promised: one won and one open bid fill the two cores.
    expect(market.placed.map((bid) => bid.orderId)).toEqual([id(1), id(2)])
    expect(await metrics.registry.metrics()).toMatch(/outpost_agent_won_unprovisioned_orders 1/)

    // The agent takes the contract in hand: counted once, not twice.
    state.held = {holding: [contract(1)], provisionedIds: new Set()}
    market.close(2, 'lost')
    await round()
    expect(market.placed.map((bid) => bid.orderId)).toEqual([id(1), id(2), id(4)])

    // Provisioned: the promise ends, the contract keeps counting as held.
    state.held = {holding: [contract(1)], provisionedIds: new Set([contract(1).contract_id])}
    market.open(order(5))
    await round()
    expect(market.placed.map((bid) => bid.orderId)).toEqual([id(1), id(2), id(4)])
    expect(await metrics.registry.metrics()).toMatch(/outpost_agent_won_unprovisioned_orders 0/)
  })

  it('releases a won order whose contract ended before it was provisioned', async () => {
    const {market, round, lines, state} = setup()
    market.open(order(1, 2))
    await round()
    market.close(1, 'won', 'cancelled')
    market.open(order(2, 2))
    await round()
    expect(market.placed.map((bid) => bid.orderId)).toEqual([id(1)])
    await round()
    expect(market.placed).toHaveLength(1)
    // The won contract's state is looked at every 2 s.
    state.now += 2000
    await round()
    expect(lines.some((line) => line.message.includes('ended before it was provisioned'))).toBe(true)
    expect(market.placed.map((bid) => bid.orderId)).toEqual([id(1), id(2)])
  })

  it('a refused bid is a decline, and its reservation is released', async () => {
    const {market, round, decisions} = setup()
    market.refuse = id(1)
    market.open(order(1, 2), order(2, 2))
    await round()
    expect(decisions(id(1))).toEqual([expect.objectContaining({details: expect.objectContaining({decision: 'declined', reason: 'bid_refused'})})])
    expect(market.placed.map((bid) => bid.orderId)).toEqual([id(2)])
  })

  it('follows the cursor: each read asks only for orders opened since, and waits on the server until something is due', async () => {
    const {market, round, state} = setup(undefined, 25)
    expect(await round()).toBe(0)
    expect(market.reads.at(-1)).toEqual({wait: 25, cursor: undefined})
    market.open(order(1), order(2))
    await round()
    // Nothing was due before the bids: the full wait. Now the bid on order 1 closes in 70 s, beyond the wait.
    expect(market.reads.at(-1)).toEqual({wait: 25, cursor: '0'})
    await round()
    expect(market.reads.at(-1)).toEqual({wait: 25, cursor: '2'})
    // With order 1 closing in 5 s, the server is asked to hold the read no longer than that.
    state.now = closesAt(1) - 5000
    await round()
    expect(market.reads.at(-1)).toEqual({wait: 5, cursor: '2'})
    // Past the close, the bid is settled; an unsettled one is asked for again after at least 1 s, never in a spin.
    state.now = closesAt(1) + 1
    await round()
    expect(market.reads.at(-1)?.wait).toBe(1)
  })
})
