import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {generateKeyPair, type KeyPair} from '../../src/core/signing.js'
import {createContract, createOffering, delegate, errorOf, pub, registerProvider, send, type Provider} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/** PROTOCOL §11 on the reference marketplace: the order book, bids, closing by the clock, lowest bid wins. */

let market: Devnet

beforeAll(async () => {
  market = await startDevnet()
})
afterAll(() => market.stop())

const SSH_KEY = 'ssh-ed25519 AAAATEST renter'
const REQUIREMENTS = {cpu_cores: 2, memory_mb: 2048, storage_gb: 20}

interface OrderAnswer {
  order_id: string
  status: string
  closes_at: number
  contract_id: string | null
  winning_bid_id: string | null
  bids: {bid_id: string; provider_pubkey: string; price_per_hour: string; status: string}[]
}

async function openOrder(requester: KeyPair, overrides: Record<string, unknown> = {}): Promise<OrderAnswer> {
  const answer = await send<OrderAnswer>(market, 'POST', '/orders', {
    key: requester,
    body: {requirements: REQUIREMENTS, max_price_per_hour: '1.5', duration_hours: 2, closes_in_seconds: 60, ssh_pubkey: SSH_KEY, ...overrides},
  })
  if (answer.status !== 201) throw new Error(`order: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body
}

const bid = (provider: Provider, orderId: string, price: string) => send(market, 'POST', `/orders/${orderId}/bids`, {key: provider.agent, body: {price_per_hour: price}})
const openOrders = async (provider: Provider) => (await send<{orders: {order_id: string}[]}>(market, 'GET', '/orders?status=open', {key: provider.agent})).body.orders
const orderOf = async (requester: KeyPair, orderId: string) => (await send<OrderAnswer>(market, 'GET', `/orders/${orderId}`, {key: requester})).body
const ownBids = async (provider: Provider, orderId: string) =>
  (await send<{bids: {status: string; contract_id: string | null; contract_status: string | null}[]}>(market, 'GET', `/orders/${orderId}/bids`, {key: provider.agent})).body.bids

/** Moves the clock past every order opened so far (closing is checked on the next access). */
function closeAll(): void {
  market.clock.advance(61_000)
}

describe('§11 orders', () => {
  it('a requester opens an order; agents with fetch_contracts list it in the §11 shape', async () => {
    const provider = await registerProvider(market)
    const requester = generateKeyPair()
    const order = await openOrder(requester, {requirements: {...REQUIREMENTS, gpu_count: 1, gpu_model: 'a100'}, region: 'eu-central'})
    expect(order).toMatchObject({status: 'open', requester_pubkey: pub(requester), bids: [], contract_id: null})
    const listed = await send<{orders: unknown[]}>(market, 'GET', '/orders?status=open&wait=0', {key: provider.agent})
    expect(listed.status).toBe(200)
    expect(listed.body.orders).toContainEqual({
      order_id: order.order_id,
      requirements: {cpu_cores: 2, memory_mb: 2048, storage_gb: 20, gpu_count: 1, gpu_model: 'a100'},
      max_price_per_hour: '1.5',
      duration_hours: 2,
      region: 'eu-central',
      closes_at: order.closes_at,
    })
    closeAll()
  })

  it('refuses malformed orders with the field named, and lists only to agent keys with fetch_contracts', async () => {
    const requester = generateKeyPair()
    const base = {requirements: REQUIREMENTS, max_price_per_hour: '1', duration_hours: 1, closes_in_seconds: 30, ssh_pubkey: SSH_KEY}
    const cases: [Record<string, unknown>, string][] = [
      [{...base, max_price_per_hour: '0'}, 'max_price_per_hour'],
      [{...base, max_price_per_hour: '1.0000001'}, 'max_price_per_hour'],
      [{...base, closes_in_seconds: 0}, 'closes_in_seconds'],
      [{...base, requirements: {...REQUIREMENTS, cpu_cores: 0}}, 'requirements.cpu_cores'],
      [{...base, colour: 'red'}, 'colour'],
    ]
    for (const [body, field] of cases) {
      const answer = await send<{error: {details: {field: string}[]}}>(market, 'POST', '/orders', {key: requester, body})
      expect(errorOf(answer), field).toEqual({status: 400, code: 'invalid_body'})
      expect(answer.body.error.details.map((detail) => detail.field)).toContain(field)
    }

    const limited = await registerProvider(market, {permissions: ['heartbeat']})
    expect(errorOf(await send(market, 'GET', '/orders', {key: limited.agent}))).toEqual({status: 403, code: 'permission_denied'})
    expect(errorOf(await send(market, 'GET', '/orders', {key: limited.main}))).toEqual({status: 403, code: 'permission_denied'})
    expect(errorOf(await send(market, 'GET', '/orders', {key: generateKeyPair()}))).toEqual({status: 401, code: 'unknown_key'})
    const provider = await registerProvider(market)
    expect(errorOf(await send(market, 'GET', '/orders?status=closed', {key: provider.agent}))).toEqual({status: 400, code: 'invalid_query'})
    expect(errorOf(await send(market, 'GET', '/orders?wait=31', {key: provider.agent}))).toEqual({status: 400, code: 'invalid_query'})
  })

  it('only the requester reads an order; an unknown order is 404', async () => {
    const requester = generateKeyPair()
    const order = await openOrder(requester)
    expect((await send(market, 'GET', `/orders/${order.order_id}`, {key: requester})).status).toBe(200)
    expect(errorOf(await send(market, 'GET', `/orders/${order.order_id}`, {key: generateKeyPair()}))).toEqual({status: 403, code: 'permission_denied'})
    expect(errorOf(await send(market, 'GET', `/orders/${'0'.repeat(32)}`, {key: requester}))).toEqual({status: 404, code: 'not_found'})
    expect(errorOf(await send(market, 'GET', '/orders/not-an-id', {key: requester}))).toEqual({status: 404, code: 'not_found'})
    closeAll()
  })
})

describe('§11 bids', () => {
  it('takes a bid (201) from an agent key with provision; refuses the main key, missing permission, prices above max, bad bodies', async () => {
    const provider = await registerProvider(market)
    const order = await openOrder(generateKeyPair())
    const placed = await bid(provider, order.order_id, '1.25')
    expect(placed.status).toBe(201)
    expect(placed.body).toEqual({
      bid_id: expect.stringMatching(/^[0-9a-f]{32}$/),
      order_id: order.order_id,
      provider_pubkey: provider.pk,
      price_per_hour: '1.25',
      placed_at: expect.any(Number),
      status: 'open',
      contract_id: null,
    })
    expect(errorOf(await bid(provider, order.order_id, '1.500001'))).toEqual({status: 409, code: 'price_above_max'})
    expect(errorOf(await send(market, 'POST', `/orders/${order.order_id}/bids`, {key: provider.main, body: {price_per_hour: '1'}}))).toEqual({
      status: 403,
      code: 'permission_denied',
    })
    const readOnly = generateKeyPair()
    await delegate(market, provider.main, readOnly, ['fetch_contracts'], null, 'read only')
    expect(errorOf(await send(market, 'POST', `/orders/${order.order_id}/bids`, {key: readOnly, body: {price_per_hour: '1'}}))).toEqual({
      status: 403,
      code: 'permission_denied',
    })
    for (const body of [{price_per_hour: '0'}, {price_per_hour: 1}, {price_per_hour: '1', note: 'x'}, undefined]) {
      expect(errorOf(await send(market, 'POST', `/orders/${order.order_id}/bids`, {key: provider.agent, body})), JSON.stringify(body)).toEqual({
        status: 400,
        code: 'invalid_body',
      })
    }
    expect(errorOf(await bid(provider, '0'.repeat(32), '1'))).toEqual({status: 404, code: 'not_found'})
    closeAll()
  })

  it('lets a provider replace its own bid; the requester sees every bid, a provider only its own', async () => {
    const [first, second] = [await registerProvider(market), await registerProvider(market)]
    const requester = generateKeyPair()
    const order = await openOrder(requester)
    const original = (await bid(first, order.order_id, '1.2')).body as {bid_id: string}
    await bid(second, order.order_id, '1.1')
    const replaced = await bid(first, order.order_id, '0.9')
    expect(replaced.status).toBe(201)
    expect(replaced.body).toMatchObject({bid_id: original.bid_id, price_per_hour: '0.9'})
    const seen = await orderOf(requester, order.order_id)
    expect(seen.bids.map((entry) => [entry.provider_pubkey, entry.price_per_hour])).toEqual([
      [second.pk, '1.1'],
      [first.pk, '0.9'],
    ])
    expect(await ownBids(second, order.order_id)).toEqual([expect.objectContaining({price_per_hour: '1.1', status: 'open', contract_status: null})])
    expect(await ownBids(await registerProvider(market), order.order_id)).toEqual([])
    closeAll()
  })

  it('refuses bids once the order has closed, and from a paused provider', async () => {
    const provider = await registerProvider(market)
    const order = await openOrder(generateKeyPair())
    closeAll()
    expect(errorOf(await bid(provider, order.order_id, '1'))).toEqual({status: 409, code: 'order_closed'})
    const paused = await registerProvider(market)
    await send(market, 'PUT', `/providers/${paused.pk}/status`, {key: paused.main, body: {status: 'paused'}})
    const another = await openOrder(generateKeyPair())
    expect(errorOf(await bid(paused, another.order_id, '1'))).toEqual({status: 409, code: 'provider_paused'})
    closeAll()
  })
})

describe('§11 closing', () => {
  it('at closes_at the lowest bid wins and becomes an accepted contract for that provider', async () => {
    const providers = [await registerProvider(market), await registerProvider(market), await registerProvider(market)]
    const requester = generateKeyPair()
    const order = await openOrder(requester, {region: 'eu-west', instance_config: {image: 'debian-12'}})
    await bid(providers[0]!, order.order_id, '1.3')
    await bid(providers[1]!, order.order_id, '0.75')
    await bid(providers[2]!, order.order_id, '0.8')
    expect((await openOrders(providers[0]!)).map((entry) => entry.order_id)).toContain(order.order_id)

    market.clock.advance(59_000)
    expect((await orderOf(requester, order.order_id)).status).toBe('open')
    market.clock.advance(2000)
    expect((await openOrders(providers[0]!)).map((entry) => entry.order_id)).not.toContain(order.order_id)
    const closed = await orderOf(requester, order.order_id)
    expect(closed).toMatchObject({status: 'awarded', closed_at: expect.any(Number), contract_id: expect.stringMatching(/^[0-9a-f]{32}$/)})
    expect(closed.bids.find((entry) => entry.bid_id === closed.winning_bid_id)).toMatchObject({provider_pubkey: providers[1]!.pk, status: 'won'})
    expect(closed.bids.filter((entry) => entry.status === 'lost')).toHaveLength(2)

    const contract = await send<Record<string, unknown>>(market, 'GET', `/contracts/${closed.contract_id}`, {key: requester})
    expect(contract.body).toMatchObject({
      offering_id: order.order_id,
      provider_pubkey: providers[1]!.pk,
      requester_pubkey: pub(requester),
      status: 'accepted',
      cpu_cores: 2,
      memory_mb: 2048,
      storage_gb: 20,
      gpu_count: 0,
      price_per_hour: '0.75',
      duration_hours: 2,
      ssh_pubkey: SSH_KEY,
      instance_config: {image: 'debian-12'},
    })
    const pending = await send<{contracts: {contract_id: string}[]}>(market, 'GET', `/providers/${providers[1]!.pk}/contracts/pending-provision`, {key: providers[1]!.agent})
    expect(pending.body.contracts.map((entry) => entry.contract_id)).toEqual([closed.contract_id])
    expect(await ownBids(providers[1]!, order.order_id)).toEqual([expect.objectContaining({status: 'won', contract_id: closed.contract_id, contract_status: 'accepted'})])
    expect(await ownBids(providers[0]!, order.order_id)).toEqual([expect.objectContaining({status: 'lost', contract_id: null, contract_status: null})])

    // The winning offering is the order's alone: never listed, never rented directly.
    const offerings = await send<{offerings: {offering_id: string}[]}>(market, 'GET', '/offerings')
    expect(offerings.body.offerings.map((offering) => offering.offering_id)).not.toContain(order.order_id)
    expect(errorOf(await send(market, 'POST', '/contracts', {key: generateKeyPair(), body: {offering_id: order.order_id, ssh_pubkey: SSH_KEY, duration_hours: 1}}))).toEqual({
      status: 404,
      code: 'not_found',
    })
  })

  it('breaks a tie by the earliest bid; a replaced bid at a new price goes to the back, at the same price keeps its place', async () => {
    const [early, late, moved] = [await registerProvider(market), await registerProvider(market), await registerProvider(market)]
    const requester = generateKeyPair()
    const tie = await openOrder(requester)
    await bid(early, tie.order_id, '1')
    await bid(late, tie.order_id, '1')
    await bid(early, tie.order_id, '1')
    const reordered = await openOrder(requester)
    await bid(moved, reordered.order_id, '1')
    await bid(late, reordered.order_id, '1')
    await bid(moved, reordered.order_id, '1.1')
    await bid(moved, reordered.order_id, '1')
    closeAll()
    const winnerOf = async (orderId: string) => {
      const closed = await orderOf(requester, orderId)
      return closed.bids.find((entry) => entry.bid_id === closed.winning_bid_id)?.provider_pubkey
    }
    expect(await winnerOf(tie.order_id)).toBe(early.pk)
    expect(await winnerOf(reordered.order_id)).toBe(late.pk)
  })

  it('passes over a winner its stake tier does not allow another contract, and a paused one; with nobody left the order is unfilled', async () => {
    const full = await registerProvider(market)
    const offeringId = await createOffering(market, full)
    // Unstaked: two contracts at once. Accepted ones count, started or not.
    await createContract(market, offeringId, generateKeyPair())
    await createContract(market, offeringId, generateKeyPair())
    const paused = await registerProvider(market)
    const fallback = await registerProvider(market)
    const requester = generateKeyPair()
    const order = await openOrder(requester)
    await bid(full, order.order_id, '0.5')
    await bid(paused, order.order_id, '0.6')
    await bid(fallback, order.order_id, '0.9')
    await send(market, 'PUT', `/providers/${paused.pk}/status`, {key: paused.main, body: {status: 'paused'}})
    const nobody = await openOrder(requester)
    await bid(full, nobody.order_id, '0.5')
    closeAll()

    const awarded = await orderOf(requester, order.order_id)
    expect(awarded.bids.find((entry) => entry.bid_id === awarded.winning_bid_id)?.provider_pubkey).toBe(fallback.pk)
    const unfilled = await orderOf(requester, nobody.order_id)
    expect(unfilled).toMatchObject({status: 'unfilled', contract_id: null, winning_bid_id: null})
    expect(unfilled.bids.map((entry) => entry.status)).toEqual(['lost'])
    expect(await ownBids(full, nobody.order_id)).toEqual([expect.objectContaining({status: 'lost'})])
  })

  it('closes on its own timer at closes_at, without any request', async () => {
    const provider = await registerProvider(market)
    const order = await openOrder(generateKeyPair(), {closes_in_seconds: 1})
    await bid(provider, order.order_id, '1')
    const statusOf = market.server.db.prepare<[string], string>('SELECT status FROM orders WHERE order_id = ?').pluck()
    expect(statusOf.get(order.order_id)).toBe('open')
    await new Promise((resolve) => setTimeout(resolve, order.closes_at - market.clock.now() + 150))
    expect(statusOf.get(order.order_id)).toBe('awarded')
  })
})

describe('§11 long poll', () => {
  it('a waiting GET /orders answers within milliseconds of an order being opened', async () => {
    const own = await startDevnet()
    try {
      const provider = await registerProvider(own)
      const waiting = send<{orders: {order_id: string}[]}>(own, 'GET', '/orders?status=open&wait=10', {key: provider.agent})
      await new Promise((resolve) => setTimeout(resolve, 200))
      const openedAt = Date.now()
      const opened = await send<{order_id: string}>(own, 'POST', '/orders', {
        key: generateKeyPair(),
        body: {requirements: REQUIREMENTS, max_price_per_hour: '1', duration_hours: 1, closes_in_seconds: 30, ssh_pubkey: SSH_KEY},
      })
      const answer = await waiting
      expect(answer.body.orders.map((entry) => entry.order_id)).toEqual([opened.body.order_id])
      expect(Date.now() - openedAt).toBeLessThan(250)

      const started = Date.now()
      own.clock.advance(31_000)
      expect((await send(own, 'GET', '/orders?wait=1', {key: provider.agent})).body).toEqual({orders: [], next_cursor: expect.any(String)})
      expect(Date.now() - started).toBeGreaterThanOrEqual(950)
    } finally {
      await own.stop()
    }
  })
})
