import type {RetryPolicy} from '../../core/api/client.js'
import {ApiError} from '../../core/api/api-error.js'
import type {Bid, CallOptions, OpenOrder, OpenOrdersPage} from '../../core/api/provider.js'
import type {Contract} from '../../core/api/schemas.js'
import type {BiddingConfig} from '../../core/config/schema.js'
import {describeError} from '../../core/errors.js'
import type {AgentLog} from '../logger.js'
import type {AgentMetrics} from '../metrics.js'
import {decideOrder} from './decide.js'
import {decline, type Decision} from './decision.js'
import {CapacityLedger, type Promised} from './ledger.js'
import {NO_RESOURCES, resourcesOf, shortfall, type Resources} from './resources.js'
import type {PricingScript} from './script-pricing.js'

/** The §11 calls the engine makes (ProviderApi has them). */
export interface BiddingApi {
  openOrdersPage(waitSeconds: number, cursor: string | undefined, options?: CallOptions): Promise<OpenOrdersPage>
  placeBid(orderId: string, pricePerHour: string, options?: CallOptions): Promise<Bid>
  ownBid(orderId: string, options?: CallOptions): Promise<Bid | undefined>
}

/** What the agent holds now, as it knows it. */
export interface HeldContracts {
  /** Contracts whose machines run here or are being made: the active list and the contracts in hand. */
  holding: readonly Contract[]
  /** Contracts on the active list (provisioned): a won order's promise ends there. */
  provisionedIds: ReadonlySet<string>
}

export interface BidEngineOptions {
  api: BiddingApi
  config: BiddingConfig
  script: PricingScript | undefined
  /** The provisioner's capacity (undefined when it reports none: then nothing is bid on). */
  readCapacity: () => Promise<Resources | undefined>
  held: () => HeldContracts
  log: AgentLog
  metrics: AgentMetrics
  longPollWaitSeconds: number
  retry: RetryPolicy
  now?: () => number
}

/** Between reads of the open orders when the server can't hold them (long poll off, or no cursor to wait after). */
const POLL_WITHOUT_WAIT_MS = 2000
const CAPACITY_REFRESH_MS = 60_000
/** How often a won contract not yet provisioned is looked at, to release its promise if it ended first. */
const WON_CHECK_MS = 2000
/** While an open order waits for free capacity, how often room is looked for. */
const ROOM_CHECK_MS = 2000
/** The shortest pause between rounds with something due, so a bid the server has not settled yet is not asked for in a spin. */
const MIN_ROUND_MS = 1000
/** Contract states that still need (or hold) the won capacity. */
const RUNNING = new Set(['accepted', 'provisioning', 'provisioned', 'active'])

/**
 * The bid engine of `outpost run` ([bidding] enabled): each round it reads the orders opened since its cursor (a
 * long poll that the server holds until one opens, or until the engine has something due: an order it bid on
 * closes, a won contract is to be looked at), settles the bids on orders that closed (won: the promise stays until
 * the contract is provisioned; lost: released), and decides every new order once: filters and price first, then a
 * reservation, then the bid. A won order is an ordinary accepted contract, provisioned by the agent's own path.
 */
export class BidEngine {
  private readonly ledger = new CapacityLedger()
  /** Orders decided while open, so each is decided (and logged) once. */
  private readonly decided = new Map<string, Decision>()
  /** Declined for lack of free capacity: considered again when enough is free while they are open. */
  private readonly waitingForRoom = new Map<string, OpenOrder>()
  /** Open orders seen, until they close (by their `closes_at`). */
  private readonly known = new Map<string, OpenOrder>()
  /** Where the next read of open orders starts: after the last order seen. */
  private cursor: string | undefined
  private morePages = false
  private capacity: Resources | undefined
  private capacityReadAt = Number.NEGATIVE_INFINITY
  private readonly now: () => number

  constructor(private readonly options: BidEngineOptions) {
    this.now = options.now ?? Date.now
  }

  /** One round; returns how long to wait before the next. */
  async round(signal: AbortSignal): Promise<number> {
    await this.refreshCapacity(signal)
    const wait = this.morePages ? 0 : this.waitSeconds()
    const page = await this.options.api.openOrdersPage(wait, this.cursor, {signal, retry: this.options.retry})
    this.cursor = page.nextCursor ?? this.cursor
    this.morePages = page.full && page.nextCursor !== undefined
    for (const order of page.orders) this.known.set(order.order_id, order)
    await this.settle(signal)
    for (const order of page.orders) {
      if (signal.aborted) break
      if (!this.decided.has(order.order_id) && this.isOpen(order)) await this.consider(order, signal, false)
    }
    for (const order of this.waitingForRoom.values()) {
      if (signal.aborted) break
      if (this.isOpen(order) && shortfall(resourcesOf(order.requirements), this.free()) === undefined) await this.consider(order, signal, true)
    }
    this.forgetClosed()
    this.updateGauges()
    if (this.morePages) return 0
    // Without a held request to pace the loop, it waits here; with one, the next round's long poll does.
    if (page.nextCursor === undefined || this.options.longPollWaitSeconds === 0) return this.untilDue(POLL_WITHOUT_WAIT_MS)
    return 0
  }

  private isOpen(order: OpenOrder): boolean {
    return order.closes_at > this.now()
  }

  /** When the engine next has something to do without a new order: a bid's order closes, a won contract is due a look, room is looked for. */
  private nextDue(): number | undefined {
    const now = this.now()
    const dues = this.ledger.all().map((promise) => (promise.state === 'bid' ? (this.known.get(promise.orderId)?.closes_at ?? now) : promise.checkedAt + WON_CHECK_MS))
    if ([...this.waitingForRoom.values()].some((order) => this.isOpen(order))) dues.push(now + ROOM_CHECK_MS)
    return dues.length === 0 ? undefined : Math.min(...dues)
  }

  /** The long poll's wait: the configured one, cut short to when something is due (at least 1 s: no spin). */
  private waitSeconds(): number {
    const most = this.options.longPollWaitSeconds
    const next = this.nextDue()
    if (most === 0 || next === undefined) return most
    return Math.max(1, Math.min(most, Math.ceil((next - this.now()) / 1000)))
  }

  private untilDue(mostMs: number): number {
    const next = this.nextDue()
    return next === undefined ? mostMs : Math.max(MIN_ROUND_MS, Math.min(mostMs, next - this.now()))
  }

  /** Orders past their close, with nothing promised to them, are forgotten. */
  private forgetClosed(): void {
    for (const [id, order] of this.known) {
      if (this.isOpen(order) || this.ledger.has(id)) continue
      this.known.delete(id)
      this.decided.delete(id)
      this.waitingForRoom.delete(id)
    }
  }

  private async refreshCapacity(signal: AbortSignal): Promise<void> {
    if (this.now() - this.capacityReadAt < CAPACITY_REFRESH_MS) return
    try {
      this.capacity = await this.options.readCapacity()
    } catch (error) {
      if (signal.aborted) return
      this.options.log.warn({err: describeError(error)}, 'bidding: could not read the provisioner capacity; keeping the last reading')
    }
    this.capacityReadAt = this.now()
  }

  private free(): Resources {
    const {holding} = this.options.held()
    return this.ledger.free(this.capacity ?? NO_RESOURCES, holding)
  }

  /** Bids on closed orders become won or lost; won orders' promises end when their contract is provisioned or ends. */
  private async settle(signal: AbortSignal): Promise<void> {
    const {provisionedIds} = this.options.held()
    for (const promise of this.ledger.all()) {
      if (signal.aborted) return
      if (promise.state === 'bid') {
        const order = this.known.get(promise.orderId)
        if (!order || !this.isOpen(order)) await this.settleBid(promise, signal)
      } else if (promise.contractId !== undefined && provisionedIds.has(promise.contractId)) {
        // From here the contract counts among those held.
        this.ledger.release(promise.orderId)
      } else if (this.now() - promise.checkedAt >= WON_CHECK_MS) {
        await this.checkWon(promise, signal)
      }
    }
  }

  private async settleBid(promise: Promised, signal: AbortSignal): Promise<void> {
    const bid = await this.options.api.ownBid(promise.orderId, {signal, retry: this.options.retry})
    if (bid?.status === 'open') return
    const {log, metrics} = this.options
    if (bid?.status === 'won' && bid.contract_id) {
      this.ledger.won(promise.orderId, bid.contract_id, this.now())
      metrics.bidOutcomes.inc({outcome: 'won'})
      log.info({order_id: promise.orderId, contract_id: bid.contract_id, price_per_hour: bid.price_per_hour}, 'bidding: won the order; its contract is provisioned like any other')
      return
    }
    this.ledger.release(promise.orderId)
    metrics.bidOutcomes.inc({outcome: 'lost'})
    log.info({order_id: promise.orderId, price_per_hour: promise.price}, 'bidding: lost the order; the capacity promised to it is released')
  }

  private async checkWon(promise: Promised, signal: AbortSignal): Promise<void> {
    const bid = await this.options.api.ownBid(promise.orderId, {signal, retry: this.options.retry})
    const status = bid?.contract_status ?? undefined
    if (status !== undefined && RUNNING.has(status)) {
      this.ledger.checked(promise.orderId, this.now())
      return
    }
    this.ledger.release(promise.orderId)
    this.options.log.info({order_id: promise.orderId, contract_id: promise.contractId, status}, 'bidding: the won contract ended before it was provisioned; its capacity is released')
  }

  /** Decides one open order and acts on it; `again` for an order declined earlier for lack of room (a repeat of that is not logged). */
  private async consider(order: OpenOrder, signal: AbortSignal, again: boolean): Promise<void> {
    const id = order.order_id
    const {holding} = this.options.held()
    const decision = await decideOrder(order, {
      config: this.options.config,
      script: this.options.script,
      capacity: this.capacity,
      committed: this.ledger.committed(holding),
      now: this.now(),
      signal,
    })
    if (signal.aborted) return
    if (decision.kind === 'declined') return this.settleDecision(order, decision, again && decision.reason === 'no_free_capacity')
    // The reservation is the last step: free capacity is read again, as pricing may have awaited a script.
    const short = shortfall(resourcesOf(order.requirements), this.free())
    if (short !== undefined) return this.settleDecision(order, decline('no_free_capacity', `not enough free capacity: ${short}`), again)
    this.ledger.reserve(id, resourcesOf(order.requirements), decision.price)
    try {
      await this.options.api.placeBid(id, decision.price, {signal, retry: this.options.retry})
    } catch (error) {
      this.ledger.release(id)
      if (error instanceof ApiError && !error.retryable) {
        return this.settleDecision(order, decline('bid_refused', `the marketplace refused the bid of ${decision.price}: ${error.apiCode}: ${error.message}`), false)
      }
      // Not decided: the next round decides it again.
      throw error
    }
    this.settleDecision(order, decision, false)
  }

  private settleDecision(order: OpenOrder, decision: Decision, quiet: boolean): void {
    const id = order.order_id
    this.decided.set(id, decision)
    if (decision.kind === 'declined' && decision.reason === 'no_free_capacity') this.waitingForRoom.set(id, order)
    else this.waitingForRoom.delete(id)
    if (!quiet) logDecision(this.options.log, this.options.metrics, order, decision, this.options.config.strategy)
  }

  private updateGauges(): void {
    this.options.metrics.openBids.set(this.ledger.count('bid'))
    this.options.metrics.wonUnprovisioned.set(this.ledger.count('won'))
  }
}

/** The order's one decision line and its count in the metric. */
function logDecision(log: AgentLog, metrics: AgentMetrics, order: OpenOrder, decision: Decision, strategy: string): void {
  if (decision.kind === 'bid') {
    metrics.bidDecisions.inc({decision: 'bid', reason: strategy})
    metrics.bidPrice.observe(Number(decision.price))
    log.info(
      {order_id: order.order_id, decision: 'bid', price_per_hour: decision.price, max_price_per_hour: order.max_price_per_hour, why: decision.why},
      `bidding: bid ${decision.price}/h on order ${order.order_id} (${decision.why})`,
    )
    return
  }
  metrics.bidDecisions.inc({decision: 'declined', reason: decision.reason})
  log.info({order_id: order.order_id, decision: 'declined', reason: decision.reason, detail: decision.detail}, `bidding: declined order ${order.order_id}: ${decision.detail}`)
}
