import {z} from 'zod'

import type {SignedUsageRecord} from '../signing.js'
import {RESPONSE_LIMITS, type ApiClient, type RetryPolicy} from './client.js'
import {
  Amount,
  Contract,
  ContractId,
  ContractList,
  HealthResponse,
  HeartbeatResponse,
  LockResponse,
  OrderRequirements,
  PendingContracts,
  ReconcileResponse,
  UnixMs,
  UsageResponse,
  type Instance,
} from './schemas.js'
import {StakeInfo} from './stake.js'

/** The agent's routes of PROTOCOL §§5 and 7, typed, for one provider. Every answer is schema-checked by ApiClient. */

export interface HeartbeatBody {
  version: string
  provisioner_type: string
  capabilities: string[]
  active_contracts: number
  capacity?: HeartbeatCapacity
  /** This agent's id (its state dir's), so siblings can tell whether it is alive (see HeartbeatResponse.agents). */
  agent_id?: string
  /** §5: the same fields, what is not in use now. */
  free?: HeartbeatCapacity
  /** §5: the §12 leases this agent holds. */
  active_leases?: number
}

export interface HeartbeatCapacity {
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  gpu_count: number
  gpu_models?: string[]
}

export type ProvisioningStatus = 'provisioning' | 'provisioned' | 'provisioning_failed'

export interface ProvisioningReport {
  status: ProvisioningStatus
  instance?: Instance
  error?: string
  retry_possible?: boolean
}

export interface HealthCheck {
  contract_id: string
  status: 'healthy' | 'unhealthy' | 'unknown'
  uptime_seconds?: number
  checked_at: number
  details?: Record<string, unknown>
}

export interface ReportedInstance {
  external_id: string
  /** null when the instance carries no contract id (it was not made by an agent). */
  contract_id: string | null
}

export interface CallOptions {
  signal?: AbortSignal
  retry?: RetryPolicy
}

/** PROTOCOL §7: at most this many items in one health or usage batch. */
export const MAX_BATCH = 1000

/** The long poll's `wait` range (PROTOCOL §7). */
export const MAX_WAIT_SECONDS = 30

const NoContent = z.unknown()

/** PROTOCOL §11: an open order as providers see it. */
export const OpenOrder = z.object({
  order_id: ContractId,
  requirements: OrderRequirements,
  max_price_per_hour: Amount,
  duration_hours: z.number().int().positive(),
  region: z.string().min(1).optional(),
  closes_at: UnixMs,
})
export type OpenOrder = z.infer<typeof OpenOrder>

/**
 * §11 open orders a page at a time (a devnet addition, README): `next_cursor` names the last order of the page; the
 * next request passes it to get only orders opened later. Absent from a marketplace without pages.
 */
const OrderPage = z.object({orders: z.array(OpenOrder), next_cursor: z.string().regex(/^[0-9A-Za-z_-]{1,64}$/).optional()})

/** How many open orders one page asks for. */
export const ORDERS_PAGE_SIZE = 100
/** The most pages `openOrders` follows (a marketplace that ignores the cursor would otherwise page forever). */
const MAX_ORDER_PAGES = 100

export interface OpenOrdersPage {
  orders: OpenOrder[]
  /** Pass to the next call for orders opened after these; undefined when the marketplace keeps no cursor. */
  nextCursor: string | undefined
  /** The page was full: more orders may be waiting right now. */
  full: boolean
}

/** A provider's bid; `contract_id` names the contract a won order became. */
export const Bid = z.object({
  bid_id: z.string().min(1),
  order_id: ContractId,
  price_per_hour: Amount,
  status: z.enum(['open', 'won', 'lost']),
  contract_id: ContractId.nullish(),
  /** The won contract's status (devnet addition to §11), to tell when it no longer holds capacity. */
  contract_status: z.string().nullish(),
})
export type Bid = z.infer<typeof Bid>

const OwnBids = z.object({bids: z.array(Bid)})

export class ProviderApi {
  readonly providerPubkey: string
  private readonly client: ApiClient

  constructor(client: ApiClient, providerPubkey: string) {
    this.client = client
    this.providerPubkey = providerPubkey
  }

  private path(suffix: string): string {
    return `/providers/${this.providerPubkey}${suffix}`
  }

  private contractPath(contractId: string, suffix: string): string {
    return this.path(`/contracts/${contractId}${suffix}`)
  }

  heartbeat(body: HeartbeatBody, options: CallOptions = {}): Promise<HeartbeatResponse> {
    return this.client.post(this.path('/heartbeat'), {schema: HeartbeatResponse, body, ...options})
  }

  /** `accepted` contracts and `provisioning` ones whose lock expired. With waitSeconds > 0 the server may hold the request. */
  async pendingProvision(waitSeconds: number, options: CallOptions = {}): Promise<Contract[]> {
    return (await this.pendingWork(waitSeconds, options)).contracts
  }

  /** pendingProvision, with how many `accepted` contracts the stake tier held back (when the marketplace says). */
  async pendingWork(waitSeconds: number, options: CallOptions = {}): Promise<{contracts: Contract[]; tierLimited: number | undefined}> {
    const wait = Math.max(0, Math.min(MAX_WAIT_SECONDS, Math.floor(waitSeconds)))
    const answer = await this.client.get(this.path('/contracts/pending-provision'), {
      schema: PendingContracts,
      maxResponseBytes: RESPONSE_LIMITS.list,
      query: wait > 0 ? {wait} : undefined,
      // The server holds a long poll on purpose for up to `wait` seconds: that is not a timeout.
      extraTimeoutMs: wait * 1000,
      ...options,
    })
    return {contracts: answer.contracts, tierLimited: answer.tier_limited}
  }

  /** §8, public: the provider's stake and tier. */
  stake(options: CallOptions = {}): Promise<StakeInfo> {
    return this.client.get(this.path('/stake'), {schema: StakeInfo, public: true, ...options})
  }

  lock(contractId: string, ttlSeconds: number, options: CallOptions = {}): Promise<LockResponse> {
    return this.client.post(this.contractPath(contractId, '/lock'), {schema: LockResponse, body: {ttl_seconds: ttlSeconds}, ...options})
  }

  async unlock(contractId: string, options: CallOptions = {}): Promise<void> {
    await this.client.delete(this.contractPath(contractId, '/lock'), {schema: NoContent, ...options})
  }

  reportProvisioning(contractId: string, report: ProvisioningReport, options: CallOptions = {}): Promise<Contract> {
    return this.client.put(this.contractPath(contractId, '/provisioning'), {schema: Contract, body: report, ...options})
  }

  async activeContracts(options: CallOptions = {}): Promise<Contract[]> {
    const {contracts} = await this.client.get(this.path('/contracts/active'), {schema: ContractList, maxResponseBytes: RESPONSE_LIMITS.list, ...options})
    return contracts
  }

  reportTerminated(contractId: string, options: CallOptions = {}): Promise<Contract> {
    return this.client.put(this.contractPath(contractId, '/terminated'), {schema: Contract, ...options})
  }

  reconcile(instances: ReportedInstance[], options: CallOptions = {}): Promise<ReconcileResponse> {
    return this.client.post(this.path('/reconcile'), {schema: ReconcileResponse, body: {instances}, ...options})
  }

  async reportHealth(checks: HealthCheck[], options: CallOptions = {}): Promise<{accepted: number}> {
    let accepted = 0
    for (let start = 0; start < checks.length; start += MAX_BATCH) {
      const body = {checks: checks.slice(start, start + MAX_BATCH)}
      accepted += (await this.client.post(this.path('/health'), {schema: HealthResponse, body, ...options})).accepted
    }
    return {accepted}
  }

  /**
   * §11 open orders opened after `cursor` (all open orders without one), oldest first, one page. With waitSeconds > 0
   * the server may hold the request until such an order opens.
   */
  async openOrdersPage(waitSeconds: number, cursor: string | undefined, options: CallOptions = {}): Promise<OpenOrdersPage> {
    const wait = Math.max(0, Math.min(MAX_WAIT_SECONDS, Math.floor(waitSeconds)))
    const page = await this.client.get('/orders', {
      schema: OrderPage,
      query: {status: 'open', ...(wait > 0 ? {wait} : {}), ...(cursor === undefined ? {} : {cursor}), limit: ORDERS_PAGE_SIZE},
      extraTimeoutMs: wait * 1000,
      maxResponseBytes: RESPONSE_LIMITS.list,
      ...options,
    })
    return {orders: page.orders, nextCursor: page.next_cursor, full: page.orders.length >= ORDERS_PAGE_SIZE}
  }

  /** Every open order, page after page (the first page may wait `waitSeconds` for one to open). */
  async openOrders(waitSeconds: number, options: CallOptions = {}): Promise<OpenOrder[]> {
    const all = new Map<string, OpenOrder>()
    let page = await this.openOrdersPage(waitSeconds, undefined, options)
    for (let pages = 1; ; pages++) {
      for (const order of page.orders) all.set(order.order_id, order)
      if (!page.full || page.nextCursor === undefined || pages >= MAX_ORDER_PAGES) return [...all.values()]
      page = await this.openOrdersPage(0, page.nextCursor, options)
    }
  }

  /** §11: places this provider's bid, or replaces its earlier one on the order. */
  placeBid(orderId: string, pricePerHour: string, options: CallOptions = {}): Promise<Bid> {
    return this.client.post(`/orders/${orderId}/bids`, {schema: Bid, body: {price_per_hour: pricePerHour}, ...options})
  }

  /** This provider's bid on an order, if it has one, with its outcome once the order closed. */
  async ownBid(orderId: string, options: CallOptions = {}): Promise<Bid | undefined> {
    const {bids} = await this.client.get(`/orders/${orderId}/bids`, {schema: OwnBids, ...options})
    return bids[0]
  }

  /** Idempotent by record_id: a record sent twice is counted in `duplicates`, not billed twice. */
  async reportUsage(records: SignedUsageRecord[], options: CallOptions = {}): Promise<UsageResponse> {
    const total = {accepted: 0, duplicates: 0}
    for (let start = 0; start < records.length; start += MAX_BATCH) {
      const body = {records: records.slice(start, start + MAX_BATCH)}
      const answer = await this.client.post(this.path('/usage'), {schema: UsageResponse, body, ...options})
      total.accepted += answer.accepted
      total.duplicates += answer.duplicates
    }
    return total
  }
}
