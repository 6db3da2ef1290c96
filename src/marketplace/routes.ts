import type {z} from 'zod'

import type {AgentPermission} from '../core/delegation.js'
import {isHex} from '../core/hex.js'
import {authorizeForProvider, type Identity, type ProviderAccess, type SignedRequestRecord} from './auth.js'
import {BenchmarkBook} from './benchmarks.js'
import {OPEN_ORDERS_TOPIC, type MarketplaceContext} from './context.js'
import {ContractBook, contractView} from './contracts.js'
import {DisputeBook} from './disputes.js'
import {HttpError, invalidBody, notFound} from './http-error.js'
import {buildBenchRoutes} from './bench-routes.js'
import {buildJobRoutes} from './job-routes.js'
import {DEFAULT_ORDERS_PAGE, OrderBook} from './orders.js'
import {ProviderRegistry} from './providers.js'
import {
  BenchmarkReportBody,
  BidBody,
  ContractBody,
  DelegationBody,
  DisputeBody,
  DisputesQuery,
  EmptyBody,
  EvidenceBody,
  fieldIssues,
  HealthBody,
  HealthSummaryQuery,
  HeartbeatBody,
  LockBody,
  NoQuery,
  OfferingBody,
  OrderBody,
  OrdersQuery,
  PendingQuery,
  ProviderBody,
  ProviderStatusBody,
  ProvisioningBody,
  ReconcileBody,
  StakeAmountBody,
  UsageBody,
} from './schemas.js'
import {StakeBook} from './stake.js'

export interface Reply {
  status: number
  body?: unknown
  /** Sent as `application/octet-stream` instead of a JSON body (§12 programs, inputs, outputs). */
  bytes?: Uint8Array
}

/** What a handler gets once the request is authenticated and authorised. */
export interface RouteRequest {
  params: Readonly<Record<string, string>>
  query: Readonly<Record<string, string>>
  /** The parsed JSON body; undefined when the body was empty or the route takes bytes. */
  body: unknown
  /** The body's exact bytes (what a route with `rawBodyLimit` reads instead of JSON). */
  rawBody: Buffer
  /** The verified signer; undefined on public routes. */
  identity: Identity | undefined
  /** The request as signed and received (§6 keeps the renter's); undefined on public routes. */
  signed: SignedRequestRecord | undefined
  /** Aborted when the client goes away or the server shuts down (ends long polls early). */
  signal: AbortSignal
  /**
   * Takes a place among the held long polls, under the per-key and total caps (429 past them); the returned
   * function gives it back.
   */
  hold: () => () => void
}

/**
 * public: unsigned GETs. signed: any verified key; the handler decides (requesters are any key). provider: a route
 * under /providers/{pk}, authorised by §3 before the handler runs. agent: a route without {pk} (§11) that takes an
 * agent key with the permission, for the provider that delegated it, authorised the same way.
 */
export type RouteAccess =
  | {kind: 'public'}
  | {kind: 'signed'}
  | {kind: 'provider'; rule: ProviderAccess}
  | {kind: 'agent'; permission: AgentPermission}

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** Segments after /api/v1; `:name` captures one. */
  segments: readonly string[]
  access: RouteAccess
  /** Set on the routes whose body is bytes, not JSON (§12: up to 16 MiB); every other body is JSON, at most 1 MiB. */
  rawBodyLimit?: number
  handle(request: RouteRequest): Reply | Promise<Reply>
}

export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body)
  if (!parsed.success) throw invalidBody(fieldIssues(parsed.error))
  return parsed.data
}

export function parseQuery<T>(schema: z.ZodType<T>, query: Readonly<Record<string, string>>): T {
  const parsed = schema.safeParse(query)
  if (parsed.success) return parsed.data
  const issues = fieldIssues(parsed.error)
  throw new HttpError(400, 'invalid_query', issues.map((issue) => `${issue.field}: ${issue.message}`).join('; '), issues)
}

const ok = (body: unknown): Reply => ({status: 200, body})
const created = (body: unknown): Reply => ({status: 201, body})
const noContent: Reply = {status: 204}
const forbidden = (message: string) => new HttpError(403, 'permission_denied', message)

function signer(request: RouteRequest): Identity {
  if (!request.identity) throw new Error('a signed route ran without a verified signer')
  return request.identity
}

function signedRecord(request: RouteRequest): SignedRequestRecord {
  if (!request.signed) throw new Error('a signed route ran without its signed request')
  return request.signed
}

function param(request: RouteRequest, name: string): string {
  const value = request.params[name]
  if (value === undefined) throw new Error(`route parameter ${name} is missing`)
  return value
}

/** Contract, dispute and challenge ids are 32 hex characters; anything else names nothing. */
function idParam(request: RouteRequest, name: string, what: string): string {
  const value = param(request, name)
  if (!isHex(value, 16)) throw notFound(what)
  return value
}

/**
 * Waits until `ready` returns something non-empty, the deadline passes, or the request is aborted. Only a request
 * that does wait takes a place among the held polls (`request.hold`, 429 past the caps).
 */
export async function longPoll<T>(
  subscribe: (wake: () => void) => () => void,
  waitMs: number,
  request: Pick<RouteRequest, 'signal' | 'hold'>,
  ready: () => T[],
): Promise<T[]> {
  let found = ready()
  // The signal only once the request may wait: the server makes it on first use.
  if (found.length > 0 || waitMs <= 0 || request.signal.aborted) return found
  const {signal} = request
  const release = request.hold()
  await new Promise<void>((resolve) => {
    const finish = () => {
      clearTimeout(timer)
      unsubscribe()
      signal.removeEventListener('abort', finish)
      resolve()
    }
    const timer = setTimeout(finish, waitMs)
    const unsubscribe = subscribe(() => {
      found = ready()
      if (found.length > 0) finish()
    })
    signal.addEventListener('abort', finish)
  }).finally(release)
  return found
}

/** The §§5–14 routes over the marketplace's books (§§12–14 in job-routes.ts). */
export function buildRoutes(context: MarketplaceContext): Route[] {
  const stake = new StakeBook(context)
  const providers = new ProviderRegistry(context, stake)
  const contracts = new ContractBook(context, stake)
  const benchmarks = new BenchmarkBook(context)
  const disputes = new DisputeBook(context)
  const orders = new OrderBook(context, contracts, stake)

  const main: RouteAccess = {kind: 'provider', rule: {kind: 'main'}}
  const agent = (permission: Extract<ProviderAccess, {kind: 'agent'}>['permission'], orMain = false): RouteAccess => ({
    kind: 'provider',
    rule: {kind: 'agent', permission, orMain},
  })
  const route = (method: Route['method'], path: string, access: RouteAccess, handle: Route['handle']): Route => ({
    method,
    segments: path.split('/').filter(Boolean),
    access,
    handle,
  })
  const pk = (request: RouteRequest) => param(request, 'pk')
  const noQuery = (request: RouteRequest) => parseQuery(NoQuery, request.query)
  const noBody = (request: RouteRequest) => parseBody(EmptyBody, request.body)
  /** A registered provider in the path (public routes answer 404 for one that isn't). */
  const knownProvider = (request: RouteRequest) => providers.row(pk(request)).pubkey
  /**
   * §11 routes have no {pk} in the path: the provider is the one whose agent key signed, authorised by §3 as if its
   * key were in the path (an agent key with the permission; the main key is refused, as on every agent route).
   */
  const biddingProvider = (request: RouteRequest, permission: AgentPermission): string => {
    const identity = signer(request)
    const providerPubkey = identity.kind === 'agent' ? identity.delegation.provider_pubkey : identity.pubkey
    authorizeForProvider(identity, providerPubkey, {kind: 'agent', permission}, context.clock.now())
    return providerPubkey
  }

  return [
    // §5 providers, delegations, heartbeat
    route('POST', '/providers', {kind: 'signed'}, (request) => {
      const identity = signer(request)
      if (identity.kind === 'agent') throw forbidden('an agent key cannot register as a provider')
      const result = providers.register(identity.pubkey, parseBody(ProviderBody, request.body))
      return {status: result.created ? 201 : 200, body: result.provider}
    }),
    route('GET', '/providers/:pk', {kind: 'public'}, (request) => ok(providers.describe(pk(request)))),
    route('PUT', '/providers/:pk/status', main, (request) => ok(providers.setProviderStatus(pk(request), parseBody(ProviderStatusBody, request.body)))),
    route('POST', '/providers/:pk/agent-delegations', {kind: 'provider', rule: {kind: 'main-or-own-delegation'}}, (request) => {
      const body = parseBody(DelegationBody, request.body)
      const identity = signer(request)
      if (identity.kind === 'other') providers.assertOwnFirstDelegation(identity.pubkey, body.agent_pubkey)
      return created(providers.addDelegation(pk(request), body))
    }),
    route('GET', '/providers/:pk/agent-delegations', {kind: 'provider', rule: {kind: 'main-or-agent'}}, (request) => {
      noQuery(request)
      return ok(providers.listDelegations(pk(request)))
    }),
    route('DELETE', '/providers/:pk/agent-delegations/:agent', main, (request) => {
      providers.revokeDelegation(pk(request), param(request, 'agent'))
      return noContent
    }),
    route('POST', '/providers/:pk/heartbeat', agent('heartbeat'), (request) =>
      ok(providers.heartbeat(pk(request), signer(request).pubkey, parseBody(HeartbeatBody, request.body))),
    ),
    route('GET', '/providers/:pk/agent-status', {kind: 'public'}, (request) => ok(providers.agentStatus(pk(request)))),

    // §6 offerings and contracts
    route('POST', '/providers/:pk/offerings', main, (request) => created(contracts.createOffering(knownProvider(request), parseBody(OfferingBody, request.body)))),
    route('GET', '/offerings', {kind: 'public'}, (request) => {
      noQuery(request)
      // An order's winning offering belongs to that order alone.
      return ok({offerings: contracts.listOfferings().offerings.filter((offering) => !orders.isOrderOffering(offering.offering_id))})
    }),
    route('POST', '/contracts', {kind: 'signed'}, (request) => {
      const body = parseBody(ContractBody, request.body)
      if (orders.isOrderOffering(body.offering_id)) throw notFound('offering')
      return created(contracts.createContract(signer(request).pubkey, body, signedRecord(request)))
    }),
    route('GET', '/contracts/:id', {kind: 'signed'}, (request) => {
      const row = contracts.row(idParam(request, 'id', 'contract'))
      const caller = signer(request).pubkey
      if (caller !== row.requester_pubkey && caller !== row.provider_pubkey) throw forbidden('only the requester or the provider main key may read this contract')
      return ok(contractView(row))
    }),
    route('POST', '/contracts/:id/cancel', {kind: 'signed'}, (request) => {
      const id = idParam(request, 'id', 'contract')
      if (signer(request).pubkey !== contracts.row(id).requester_pubkey) throw forbidden('only the requester may cancel this contract')
      noBody(request)
      return ok(contracts.cancel(id))
    }),

    // §7 the agent's work
    route('GET', '/providers/:pk/contracts/pending-provision', agent('fetch_contracts'), async (request) => {
      const {wait = 0} = parseQuery(PendingQuery, request.query)
      const providerPubkey = knownProvider(request)
      const found = await longPoll(
        (wake) => context.pending.subscribe(providerPubkey, wake),
        wait * 1000,
        request,
        () => contracts.pendingProvision(providerPubkey, signer(request).pubkey),
      )
      // Devnet addition to §7: how many accepted contracts the stake tier holds back, so the agent can say so.
      return ok({contracts: found, tier_limited: contracts.tierLimited(providerPubkey)})
    }),
    route('POST', '/providers/:pk/contracts/:id/lock', agent('provision'), (request) =>
      ok(contracts.lock(pk(request), idParam(request, 'id', 'contract'), signer(request).pubkey, parseBody(LockBody, request.body).ttl_seconds)),
    ),
    route('DELETE', '/providers/:pk/contracts/:id/lock', agent('provision'), (request) => {
      contracts.unlock(pk(request), idParam(request, 'id', 'contract'), signer(request).pubkey)
      return noContent
    }),
    route('PUT', '/providers/:pk/contracts/:id/provisioning', agent('provision'), (request) =>
      ok(contracts.updateProvisioning(pk(request), idParam(request, 'id', 'contract'), signer(request).pubkey, parseBody(ProvisioningBody, request.body))),
    ),
    route('GET', '/providers/:pk/contracts/active', agent('fetch_contracts'), (request) => {
      noQuery(request)
      return ok({contracts: contracts.activeContracts(pk(request))})
    }),
    route('PUT', '/providers/:pk/contracts/:id/terminated', agent('provision'), (request) => {
      noBody(request)
      return ok(contracts.terminated(pk(request), idParam(request, 'id', 'contract'), signer(request).pubkey))
    }),
    route('POST', '/providers/:pk/reconcile', agent('fetch_contracts'), (request) => ok(contracts.reconcile(pk(request), parseBody(ReconcileBody, request.body)))),
    route('POST', '/providers/:pk/health', agent('health_check'), (request) => ok(contracts.recordHealth(pk(request), parseBody(HealthBody, request.body)))),
    route('GET', '/providers/:pk/health-summary', {kind: 'public'}, (request) => {
      const {days = 30} = parseQuery(HealthSummaryQuery, request.query)
      return ok(contracts.healthSummary(knownProvider(request), days))
    }),
    route('POST', '/providers/:pk/usage', agent('usage_report'), (request) => ok(contracts.recordUsage(pk(request), parseBody(UsageBody, request.body)))),

    // §8 stake and rewards
    route('GET', '/providers/:pk/stake', {kind: 'public'}, (request) => ok(stake.view(pk(request)))),
    route('POST', '/providers/:pk/stake', main, (request) => ok(stake.stake(pk(request), parseBody(StakeAmountBody, request.body).amount))),
    route('POST', '/providers/:pk/unstake', main, (request) => ok(stake.unstake(pk(request), parseBody(StakeAmountBody, request.body).amount))),
    route('POST', '/providers/:pk/rewards/claim', main, (request) => {
      noBody(request)
      return ok(stake.claimRewards(pk(request)))
    }),

    // §9 benchmarks
    route('POST', '/providers/:pk/benchmarks/challenges', agent('benchmark', true), (request) => {
      noBody(request)
      return created(benchmarks.createChallenge(knownProvider(request)))
    }),
    route('POST', '/providers/:pk/benchmarks', agent('benchmark', true), async (request) =>
      created(await benchmarks.submit(pk(request), signer(request).pubkey, parseBody(BenchmarkReportBody, request.body))),
    ),
    route('GET', '/providers/:pk/benchmarks', {kind: 'public'}, (request) => ok(benchmarks.list(knownProvider(request)))),

    // §10 disputes
    route('POST', '/contracts/:id/disputes', {kind: 'signed'}, (request) => {
      const contract = contracts.row(idParam(request, 'id', 'contract'))
      if (signer(request).pubkey !== contract.requester_pubkey) throw forbidden('only the requester may open a dispute on this contract')
      return created(disputes.open(contract, parseBody(DisputeBody, request.body)))
    }),
    route('GET', '/providers/:pk/disputes', main, (request) => ok(disputes.list(pk(request), parseQuery(DisputesQuery, request.query).status))),
    route('GET', '/disputes/:id', {kind: 'signed'}, (request) => {
      const dispute = disputes.get(idParam(request, 'id', 'dispute'))
      const caller = signer(request).pubkey
      if (caller !== dispute.provider_pubkey && caller !== dispute.requester_pubkey) throw forbidden('only the provider main key or the requester may read this dispute')
      return ok(dispute)
    }),
    route('POST', '/disputes/:id/evidence', {kind: 'signed'}, (request) => {
      const id = idParam(request, 'id', 'dispute')
      assertDisputeProvider(signer(request), disputes.get(id).provider_pubkey)
      return ok(disputes.addEvidence(id, parseBody(EvidenceBody, request.body)))
    }),
    route('POST', '/disputes/:id/accept', {kind: 'signed'}, (request) => {
      const id = idParam(request, 'id', 'dispute')
      assertDisputeProvider(signer(request), disputes.get(id).provider_pubkey)
      noBody(request)
      return ok(disputes.accept(id))
    }),

    // §11 orders and bids (POST /orders and GET /orders/{id} are the requester's, in the spirit of POST /contracts)
    route('POST', '/orders', {kind: 'signed'}, (request) => created(orders.create(signer(request).pubkey, parseBody(OrderBody, request.body), signedRecord(request)))),
    route('GET', '/orders', {kind: 'agent', permission: 'fetch_contracts'}, async (request) => {
      const {wait = 0, cursor = 0, limit = DEFAULT_ORDERS_PAGE} = parseQuery(OrdersQuery, request.query)
      const found = await longPoll((wake) => context.orders.subscribe(OPEN_ORDERS_TOPIC, wake), wait * 1000, request, () => orders.listOpen(cursor, limit))
      return ok({orders: found.map(({order}) => order), next_cursor: String(found.at(-1)?.seq ?? cursor)})
    }),
    route('GET', '/orders/:id', {kind: 'signed'}, (request) => {
      const order = orders.row(idParam(request, 'id', 'order'))
      if (signer(request).pubkey !== order.requester_pubkey) throw forbidden('only the requester may read this order')
      return ok(orders.view(order))
    }),
    route('POST', '/orders/:id/bids', {kind: 'agent', permission: 'provision'}, (request) => {
      const id = idParam(request, 'id', 'order')
      const providerPubkey = biddingProvider(request, 'provision')
      return created(orders.bid(id, providerPubkey, signer(request).pubkey, parseBody(BidBody, request.body)))
    }),
    route('GET', '/orders/:id/bids', {kind: 'signed'}, (request) => {
      const id = idParam(request, 'id', 'order')
      noQuery(request)
      const order = orders.row(id)
      if (signer(request).pubkey === order.requester_pubkey) return ok({bids: orders.view(order).bids})
      return ok(orders.ownBids(id, biddingProvider(request, 'fetch_contracts')))
    }),

    ...buildJobRoutes(context, stake, providers),
    ...buildBenchRoutes(),
  ]
}

/** Main-key-only routes outside /providers/{pk}: the dispute's provider main key, never an agent key. */
function assertDisputeProvider(identity: Identity, providerPubkey: string): void {
  if (identity.kind === 'agent') throw forbidden('this route takes the provider main key; agent keys are refused')
  if (identity.pubkey !== providerPubkey) throw forbidden('only the provider of this dispute may answer it')
}
