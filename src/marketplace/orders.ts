import type {z} from 'zod'

import {formatAmount, parseAmount} from '../core/decimal.js'
import {orderIdOf} from '../core/contract-request.js'
import {randomHex} from '../core/signing.js'
import type {SignedRequestRecord} from './auth.js'
import {fromJsonColumn, OPEN_ORDERS_TOPIC, type MarketplaceContext} from './context.js'
import type {ContractBook} from './contracts.js'
import {HttpError, notFound} from './http-error.js'
import type {BidBody, OrderBody} from './schemas.js'
import type {StakeBook} from './stake.js'

type OrderStatus = 'open' | 'awarded' | 'unfilled'
type BidStatus = 'open' | 'won' | 'lost'

// setTimeout takes at most a signed 32-bit delay; a later close is re-armed when this one fires.
const MAX_TIMER_MS = 2 ** 31 - 1
/** §11 GET /orders answers at most this many open orders unless `limit` (1–500) says otherwise. */
export const DEFAULT_ORDERS_PAGE = 100

interface OrderRow {
  order_id: string
  requester_pubkey: string
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  gpu_count: number
  gpu_model: string | null
  max_price_per_hour_micro: string
  duration_hours: number
  region: string | null
  ssh_pubkey: string
  instance_config: string | null
  created_at: number
  closes_at: number
  status: OrderStatus
  closed_at: number | null
  winning_bid_id: string | null
  contract_id: string | null
  /** §6: the renter's signed POST /orders; null for orders made before it was kept. */
  request: string | null
}

interface BidRow {
  seq: number
  bid_id: string
  order_id: string
  provider_pubkey: string
  agent_pubkey: string
  price_per_hour_micro: string
  placed_at: number
  status: BidStatus
}

interface Requirements {
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  gpu_count: number
  gpu_model?: string
}

/** §11: an open order as providers see it (no requester key, no SSH key). */
export interface OpenOrderView {
  order_id: string
  requirements: Requirements
  max_price_per_hour: string
  duration_hours: number
  region?: string
  closes_at: number
}

export interface BidView {
  bid_id: string
  order_id: string
  provider_pubkey: string
  price_per_hour: string
  placed_at: number
  status: BidStatus
  /** The contract the order became, on a won bid. */
  contract_id: string | null
}

/** A provider's own bid, with the state of the contract it won (so its agent can release what it promised). */
export interface OwnBidView extends BidView {
  contract_status: string | null
}

/** The requester's view: everything it asked, the bids so far, and the outcome. */
export interface OrderView extends OpenOrderView {
  requester_pubkey: string
  ssh_pubkey: string
  instance_config: Record<string, unknown> | null
  created_at: number
  status: OrderStatus
  closed_at: number | null
  bids: BidView[]
  winning_bid_id: string | null
  contract_id: string | null
}

function requirements(row: OrderRow): Requirements {
  return {
    cpu_cores: row.cpu_cores,
    memory_mb: row.memory_mb,
    storage_gb: row.storage_gb,
    gpu_count: row.gpu_count,
    ...(row.gpu_model === null ? {} : {gpu_model: row.gpu_model}),
  }
}

function openOrderView(row: OrderRow): OpenOrderView {
  return {
    order_id: row.order_id,
    requirements: requirements(row),
    max_price_per_hour: formatAmount(BigInt(row.max_price_per_hour_micro)),
    duration_hours: row.duration_hours,
    ...(row.region === null ? {} : {region: row.region}),
    closes_at: row.closes_at,
  }
}

function bidView(row: BidRow, order: OrderRow): BidView {
  return {
    bid_id: row.bid_id,
    order_id: row.order_id,
    provider_pubkey: row.provider_pubkey,
    price_per_hour: formatAmount(BigInt(row.price_per_hour_micro)),
    placed_at: row.placed_at,
    status: row.status,
    contract_id: row.status === 'won' ? order.contract_id : null,
  }
}

/** Lowest price first; at one price, the bid placed first (its sequence number). */
function byPriceThenTime(a: BidRow, b: BidRow): number {
  const difference = BigInt(a.price_per_hour_micro) - BigInt(b.price_per_hour_micro)
  if (difference !== 0n) return difference < 0n ? -1 : 1
  return a.seq - b.seq
}

/**
 * §11 the order book: requesters open orders, providers' agents bid, and at `closes_at` the lowest bid whose provider
 * can take one more contract (active, and inside its stake tier) wins. The order then becomes a hidden offering at the
 * winning price (its id is the order id) and an ordinary `accepted` contract of that offering, which the winner's
 * agent picks up by pending-provision like any other. Closing runs on a timer set for the next `closes_at`, and
 * again before every read or write of the book, so a moved test clock closes orders too.
 */
export class OrderBook {
  private readonly statements
  private closeTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly context: MarketplaceContext,
    private readonly contracts: ContractBook,
    private readonly stake: StakeBook,
  ) {
    const {db} = context
    this.statements = {
      insertOrder: db.prepare(
        `INSERT INTO orders (order_id, requester_pubkey, cpu_cores, memory_mb, storage_gb, gpu_count, gpu_model, max_price_per_hour_micro,
           duration_hours, region, ssh_pubkey, instance_config, created_at, closes_at, status, request)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)`,
      ),
      order: db.prepare<[string], OrderRow>('SELECT * FROM orders WHERE order_id = ?'),
      isOrder: db.prepare<[string], number>('SELECT 1 FROM orders WHERE order_id = ?').pluck(),
      // Pages follow the order of creation (rowid), so a cursor never skips an order opened later.
      open: db.prepare<[number, number, number], OrderRow & {seq: number}>(
        "SELECT rowid AS seq, * FROM orders WHERE status = 'open' AND closes_at > ? AND rowid > ? ORDER BY rowid LIMIT ?",
      ),
      due: db.prepare<[number], OrderRow>("SELECT * FROM orders WHERE status = 'open' AND closes_at <= ? ORDER BY closes_at, order_id"),
      nextClose: db.prepare<[], number | null>("SELECT min(closes_at) FROM orders WHERE status = 'open'").pluck(),
      close: db.prepare('UPDATE orders SET status = ?, closed_at = ?, winning_bid_id = ?, contract_id = ? WHERE order_id = ?'),
      bids: db.prepare<[string], BidRow>('SELECT * FROM bids WHERE order_id = ? ORDER BY seq'),
      ownBid: db.prepare<[string, string], BidRow>('SELECT * FROM bids WHERE order_id = ? AND provider_pubkey = ?'),
      deleteBid: db.prepare('DELETE FROM bids WHERE order_id = ? AND provider_pubkey = ?'),
      insertBid: db.prepare(
        `INSERT INTO bids (bid_id, order_id, provider_pubkey, agent_pubkey, price_per_hour_micro, placed_at, status) VALUES (?, ?, ?, ?, ?, ?, 'open')`,
      ),
      settleBids: db.prepare("UPDATE bids SET status = CASE WHEN bid_id = ? THEN 'won' ELSE 'lost' END WHERE order_id = ?"),
      providerStatus: db.prepare<[string], string>('SELECT status FROM providers WHERE pubkey = ?').pluck(),
      heartbeatStatus: db.prepare<[string], string | null>('SELECT heartbeat_status FROM providers WHERE pubkey = ?').pluck(),
      // Every contract the provider holds or has been handed and not yet started counts against its tier here:
      // an award it could not start would wait indefinitely.
      holding: db
        .prepare<[string], number>(
          `SELECT count(*) FROM contracts WHERE provider_pubkey = ? AND (status IN ('accepted', 'provisioning', 'provisioned', 'active')
             OR (termination_pending = 1 AND provisioned_at IS NOT NULL))`,
        )
        .pluck(),
      insertOffering: db.prepare(
        `INSERT INTO offerings (offering_id, provider_pubkey, name, product_type, cpu_cores, memory_mb, storage_gb, gpu_count,
           price_per_hour_micro, region, provisioner, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)`,
      ),
    }
    context.lifetime.addEventListener('abort', () => clearTimeout(this.closeTimer), {once: true})
    this.armCloseTimer()
  }

  private now(): number {
    return this.context.clock.now()
  }

  /**
   * Opens an order. Its id is derived from the renter's signed request (§6, README): the won contract carries the
   * order id as its offering_id and the request, so the winning agent can check the one names the other.
   */
  create(requesterPubkey: string, body: z.infer<typeof OrderBody>, request: SignedRequestRecord): OrderView {
    this.closeDue()
    const now = this.now()
    const orderId = orderIdOf(request)
    const {requirements: wanted} = body
    this.statements.insertOrder.run(
      orderId,
      requesterPubkey,
      wanted.cpu_cores,
      wanted.memory_mb,
      wanted.storage_gb,
      wanted.gpu_count ?? 0,
      wanted.gpu_model ?? null,
      parseAmount(body.max_price_per_hour).toString(),
      body.duration_hours,
      body.region ?? null,
      body.ssh_pubkey,
      body.instance_config === undefined ? null : JSON.stringify(body.instance_config),
      now,
      now + body.closes_in_seconds * 1000,
      JSON.stringify(request),
    )
    this.armCloseTimer()
    this.context.orders.notify(OPEN_ORDERS_TOPIC)
    return this.view(this.row(orderId))
  }

  /** Open orders opened after `cursor` (a sequence number), oldest first, at most `limit`. */
  listOpen(cursor: number, limit: number): {seq: number; order: OpenOrderView}[] {
    this.closeDue()
    return this.statements.open.all(this.now(), cursor, limit).map((row) => ({seq: row.seq, order: openOrderView(row)}))
  }

  row(orderId: string): OrderRow {
    this.closeDue()
    const row = this.statements.order.get(orderId)
    if (!row) throw notFound('order')
    return row
  }

  /** Whether an offering id names an order's hidden offering (never listed, never rented directly). */
  isOrderOffering(offeringId: string): boolean {
    return this.statements.isOrder.get(offeringId) !== undefined
  }

  view(row: OrderRow): OrderView {
    return {
      ...openOrderView(row),
      requester_pubkey: row.requester_pubkey,
      ssh_pubkey: row.ssh_pubkey,
      instance_config: fromJsonColumn<Record<string, unknown>>(row.instance_config),
      created_at: row.created_at,
      status: row.status,
      closed_at: row.closed_at,
      bids: this.statements.bids.all(row.order_id).map((bid) => bidView(bid, row)),
      winning_bid_id: row.winning_bid_id,
      contract_id: row.contract_id,
    }
  }

  /**
   * A provider's bid; posting again replaces its price (the replaced bid goes to the back of the queue at its new
   * price, unless the price is the same, which changes nothing).
   */
  bid(orderId: string, providerPubkey: string, agentPubkey: string, body: z.infer<typeof BidBody>): BidView {
    const order = this.row(orderId)
    if (order.status !== 'open') throw new HttpError(409, 'order_closed', `the order is ${order.status}: bids are no longer taken`)
    if (this.statements.providerStatus.get(providerPubkey) !== 'active') {
      throw new HttpError(409, 'provider_paused', 'a paused provider takes no new contracts, so it cannot bid')
    }
    const price = parseAmount(body.price_per_hour)
    if (price > BigInt(order.max_price_per_hour_micro)) {
      throw new HttpError(409, 'price_above_max', `the bid ${body.price_per_hour} is above the order's max_price_per_hour ${formatAmount(BigInt(order.max_price_per_hour_micro))}`)
    }
    const existing = this.statements.ownBid.get(orderId, providerPubkey)
    if (existing && BigInt(existing.price_per_hour_micro) === price) return bidView(existing, order)
    this.context.db.transaction(() => {
      this.statements.deleteBid.run(orderId, providerPubkey)
      this.statements.insertBid.run(existing?.bid_id ?? randomHex(16), orderId, providerPubkey, agentPubkey, price.toString(), this.now())
    })()
    const placed = this.statements.ownBid.get(orderId, providerPubkey)
    if (!placed) throw new Error('a bid just written is missing')
    return bidView(placed, order)
  }

  /** The provider's own bids on an order (none or one), with the state of a won contract. */
  ownBids(orderId: string, providerPubkey: string): {bids: OwnBidView[]} {
    const order = this.row(orderId)
    const own = this.statements.ownBid.get(orderId, providerPubkey)
    if (!own) return {bids: []}
    const view = bidView(own, order)
    const contractStatus = view.contract_id === null ? null : this.contracts.row(view.contract_id).status
    return {bids: [{...view, contract_status: contractStatus}]}
  }

  /** Closes every open order whose `closes_at` has passed, oldest first, each in its own transaction. */
  closeDue(): void {
    const now = this.now()
    const due = this.statements.due.all(now)
    for (const order of due) this.context.db.transaction(() => this.award(order, now))()
    if (due.length > 0) this.armCloseTimer()
  }

  private award(order: OrderRow, now: number): void {
    const ranked = this.statements.bids.all(order.order_id).sort(byPriceThenTime)
    const winner = ranked.find((bid) => this.canTakeAnother(bid.provider_pubkey))
    if (!winner) {
      this.statements.settleBids.run(null, order.order_id)
      this.statements.close.run('unfilled', now, null, null, order.order_id)
      return
    }
    this.statements.insertOffering.run(
      order.order_id,
      winner.provider_pubkey,
      `order ${order.order_id}`,
      order.gpu_count > 0 ? 'gpu' : 'compute',
      order.cpu_cores,
      order.memory_mb,
      order.storage_gb,
      order.gpu_count,
      winner.price_per_hour_micro,
      order.region,
      now,
    )
    const contract = this.contracts.createContract(
      order.requester_pubkey,
      {
        offering_id: order.order_id,
        ssh_pubkey: order.ssh_pubkey,
        duration_hours: order.duration_hours,
        ...(order.instance_config === null ? {} : {instance_config: fromJsonColumn<Record<string, unknown>>(order.instance_config) ?? {}}),
      },
      fromJsonColumn<SignedRequestRecord>(order.request),
    )
    this.statements.settleBids.run(winner.bid_id, order.order_id)
    this.statements.close.run('awarded', now, winner.bid_id, contract.contract_id, order.order_id)
  }

  /** Active (not paused, its agent not draining) and below its stake tier's limit, counting contracts handed to it and not yet started. */
  private canTakeAnother(providerPubkey: string): boolean {
    if (this.statements.providerStatus.get(providerPubkey) !== 'active') return false
    if (this.statements.heartbeatStatus.get(providerPubkey) === 'draining') return false
    const max = this.stake.maxConcurrent(providerPubkey)
    return max === null || (this.statements.holding.get(providerPubkey) ?? 0) < max
  }

  /** Sets the timer for the next order to close; the server's stop clears it. */
  private armCloseTimer(): void {
    clearTimeout(this.closeTimer)
    if (this.context.lifetime.aborted) return
    const next = this.statements.nextClose.get()
    if (next === null || next === undefined) return
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, next - this.now()))
    this.closeTimer = setTimeout(() => {
      if (this.context.lifetime.aborted) return
      this.closeDue()
      this.armCloseTimer()
    }, delay)
    this.closeTimer.unref()
  }
}
