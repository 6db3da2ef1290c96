import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {setTimeout as sleep} from 'node:timers/promises'
import type {AddressInfo} from 'node:net'

import {
  DEFAULT_MAX_NONCES,
  IdentityResolver,
  NonceStore,
  authorizeForProvider,
  delegatedProvider,
  signedRequestRecord,
  verifyRequestSignature,
  type Identity,
  type SignedRequestRecord,
} from './auth.js'
import {DEFAULT_BENCHMARK_ATTEMPTS_PER_HOUR, DEFAULT_BENCHMARK_VERIFICATIONS_PER_MINUTE} from './benchmarks.js'
import {systemClock, type Clock} from './clock.js'
import {DEFAULT_HEARTBEAT_SECONDS, DEFAULT_UNBONDING_PERIOD_MS, PendingSignal, type MarketplaceContext} from './context.js'
import {DEFAULT_HEALTH_CHECKS_PER_CONTRACT} from './contracts.js'
import {openDatabase, type Db} from './database.js'
import {HttpError} from './http-error.js'
import {buildRoutes, type Reply, type Route} from './routes.js'
import {LongPollGate, RateLimiter} from './rate-limiter.js'

export const API_PREFIX = '/api/v1'
/** §1: bodies are at most 1 MiB. */
export const MAX_BODY_BYTES = 1024 * 1024
/**
 * Requests a second per signing key, with a burst of two seconds' worth (`devnet start --rate-limit`). An agent
 * needs a few a second; a hundred leaves room for a burst of provisioning and for renters' scripts.
 */
export const DEFAULT_RATE_LIMIT_PER_SECOND = 100
/**
 * Requests a second per client address, signed or not, checked before any signature (`--address-rate-limit`):
 * keys cost nothing to make, so a flood from one address is bounded however many keys it signs with.
 */
export const DEFAULT_ADDRESS_RATE_LIMIT_PER_SECOND = 500
/** Long polls held at once per signing key (`--max-long-polls-per-key`) and in all (`--max-long-polls`). */
export const DEFAULT_MAX_LONG_POLLS_PER_KEY = 4
export const DEFAULT_MAX_LONG_POLLS = 1000
/**
 * A 429 is answered after its Retry-After, up to this long: a client that ignores Retry-After and asks again at once
 * slows itself down instead of the server (a client that honours it waits that long anyway).
 */
export const RATE_LIMITED_ANSWER_DELAY_MS = 1000
/** The most 429 answers held back at once (each holds a socket); past it they go out at once. */
const MAX_DELAYED_REFUSALS = 1000
// Past this much an oversized body is not worth reading to the end to answer 413 politely.
const DRAIN_LIMIT_BYTES = 16 * MAX_BODY_BYTES
const HOUSEKEEPING_INTERVAL_MS = 30_000
// An abort reason made once: abort() without one builds a DOMException per request, a measurable cost here.
const REQUEST_ENDED = new Error('the request ended')
const ROLLED_BACK = 'SQLite rolled back the transaction (is the disk full?)'

export interface MarketplaceOptions {
  dataDir: string
  clock?: Clock
  unbondingPeriodMs?: number
  /** Requests per second per signing key. */
  rateLimitPerSecond?: number
  /** Requests per second per client address, signed or public. */
  addressRateLimitPerSecond?: number
  maxLongPollsPerKey?: number
  maxLongPolls?: number
  /** Benchmark challenges (so verified submissions) per provider per hour. */
  benchmarkAttemptsPerHour?: number
  /** Benchmark verifications started per minute, all providers together. */
  benchmarkVerificationsPerMinute?: number
  /** The most nonces remembered at once (§2 replay store); past it signed requests wait (429). */
  maxNonces?: number
  /** Health checks kept per contract; older ones make room. */
  healthChecksPerContract?: number
  heartbeatSeconds?: number
  /** §12 traps per renter job of a kind (`devnet start --trap-ratio`); 0 (the default) mixes in none. */
  trapRatio?: number
  /** Where unexpected failures (500s) are reported. */
  logError?: (error: unknown) => void
}

export interface ListenOptions {
  port: number
  host: string
}

/** A request on its way through: its lazily made end signal and the write batch it joined. */
interface Exchange {
  ended: () => AbortSignal
  batch: WriteBatch | undefined
}

/** The transaction the requests of one event-loop turn share (see joinBatch). */
interface WriteBatch {
  committed: Promise<void>
  settle: (error?: unknown) => void
  /** Set when SQLite rolled the transaction back under a request: the batch fails with this. */
  lost: Error | undefined
}

interface CompiledRoute extends Route {
  method: Route['method']
}

function match(routes: readonly CompiledRoute[], method: string, path: string): {route: CompiledRoute; params: Record<string, string>} {
  const segments = path.split('/').filter(Boolean)
  let pathMatched = false
  // Every request tries the table in order: a route that doesn't fit costs no allocation, its params are read once found.
  for (const route of routes) {
    if (!fits(route.segments, segments)) continue
    pathMatched = true
    if (route.method === method) return {route, params: paramsOf(route.segments, segments)}
  }
  if (pathMatched) throw new HttpError(405, 'method_not_allowed', `${method} is not served on this path`)
  throw new HttpError(404, 'not_found', `no route ${method} ${API_PREFIX}${path}`)
}

function fits(patterns: readonly string[], segments: readonly string[]): boolean {
  if (patterns.length !== segments.length) return false
  return patterns.every((pattern, index) => pattern.startsWith(':') || pattern === segments[index])
}

function paramsOf(patterns: readonly string[], segments: readonly string[]): Record<string, string> {
  const params: Record<string, string> = {}
  patterns.forEach((pattern, index) => {
    if (pattern.startsWith(':')) params[pattern.slice(1)] = segments[index] ?? ''
  })
  return params
}

/**
 * Reads the body, refusing (413) past `limit` (1 MiB, or 16 MiB on the §12 byte routes); an oversized body is
 * drained first so the client reads the answer.
 */
function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(request.headers['content-length'] ?? 0)
    const drainLimit = Math.max(DRAIN_LIMIT_BYTES, 2 * limit)
    let tooLarge = declared > limit
    let size = 0
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) tooLarge = true
      if (!tooLarge) chunks.push(chunk)
      if (size > drainLimit) request.destroy()
    })
    request.on('end', () => {
      if (tooLarge) reject(new HttpError(413, 'body_too_large', `the body exceeds ${limit} bytes`))
      else resolve(Buffer.concat(chunks))
    })
    request.on('error', reject)
  })
}

function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0) return undefined
  try {
    return JSON.parse(body.toString('utf8')) as unknown
  } catch {
    throw new HttpError(400, 'invalid_body', 'body: not valid JSON', [{field: 'body', message: 'not valid JSON'}])
  }
}

function parseQueryString(search: string): Record<string, string> {
  const query: Record<string, string> = {}
  if (search === '') return query
  for (const [key, value] of new URLSearchParams(search)) {
    if (key in query) throw new HttpError(400, 'invalid_query', `${key}: given more than once`, [{field: key, message: 'given more than once'}])
    query[key] = value
  }
  return query
}

/**
 * The reference marketplace (PROTOCOL §§1–11) over node:http and SQLite. Each request: route, the address's rate
 * limit (429), body (413), signature, host and timestamp (401), the key's rate limit (429), §3 authorisation
 * (401/403), nonce (401), JSON and schema (400), then the handler; a long poll that would wait takes a place under
 * the per-key and total caps first (429). Handlers are synchronous SQLite work, so two requests never interleave inside one.
 */
export class MarketplaceServer {
  readonly db: Db
  private readonly server: Server
  private readonly clock: Clock
  private readonly routes: CompiledRoute[]
  private readonly nonces: NonceStore
  private readonly identities: IdentityResolver
  private readonly keyLimiter: RateLimiter
  private readonly addressLimiter: RateLimiter
  private readonly polls: LongPollGate
  private readonly logError: (error: unknown) => void
  private readonly inFlight = new Set<AbortController>()
  private batch: WriteBatch | undefined
  private delayedRefusals = 0
  private closing = false
  private readonly housekeeping: NodeJS.Timeout
  private stopped: Promise<void> | undefined
  private readonly lifetime = new AbortController()
  private address: AddressInfo | undefined

  constructor(options: MarketplaceOptions) {
    this.db = openDatabase(options.dataDir)
    this.clock = options.clock ?? systemClock
    this.logError = options.logError ?? ((error) => console.error('marketplace: internal error:', error))
    const context: MarketplaceContext = {
      db: this.db,
      clock: this.clock,
      pending: new PendingSignal(),
      orders: new PendingSignal(),
      jobs: new PendingSignal(),
      lifetime: this.lifetime.signal,
      logError: this.logError,
      settings: {
        unbondingPeriodMs: options.unbondingPeriodMs ?? DEFAULT_UNBONDING_PERIOD_MS,
        heartbeatSeconds: options.heartbeatSeconds ?? DEFAULT_HEARTBEAT_SECONDS,
        trapRatio: options.trapRatio ?? 0,
        benchmarkAttemptsPerHour: options.benchmarkAttemptsPerHour ?? DEFAULT_BENCHMARK_ATTEMPTS_PER_HOUR,
        benchmarkVerificationsPerMinute: options.benchmarkVerificationsPerMinute ?? DEFAULT_BENCHMARK_VERIFICATIONS_PER_MINUTE,
        healthChecksPerContract: options.healthChecksPerContract ?? DEFAULT_HEALTH_CHECKS_PER_CONTRACT,
      },
    }
    this.routes = buildRoutes(context)
    this.nonces = new NonceStore(this.db, options.maxNonces ?? DEFAULT_MAX_NONCES)
    this.identities = new IdentityResolver(this.db)
    const keyRate = options.rateLimitPerSecond ?? DEFAULT_RATE_LIMIT_PER_SECOND
    const addressRate = options.addressRateLimitPerSecond ?? DEFAULT_ADDRESS_RATE_LIMIT_PER_SECOND
    this.keyLimiter = new RateLimiter(keyRate, `more than ${keyRate} requests a second from this key`)
    this.addressLimiter = new RateLimiter(addressRate, `more than ${addressRate} requests a second from this address`)
    this.polls = new LongPollGate(options.maxLongPollsPerKey ?? DEFAULT_MAX_LONG_POLLS_PER_KEY, options.maxLongPolls ?? DEFAULT_MAX_LONG_POLLS)
    this.server = createServer((request, response) => void this.serve(request, response))
    this.nonces.forgetOlderThanRetention(this.clock.now())
    this.housekeeping = setInterval(() => {
      const now = this.clock.now()
      this.nonces.forgetOlderThanRetention(now)
      this.keyLimiter.forgetIdle(now)
      this.addressLimiter.forgetIdle(now)
    }, HOUSEKEEPING_INTERVAL_MS)
    this.housekeeping.unref()
  }

  /** Starts listening; port 0 picks a free port. Resolves with the endpoint (without /api/v1). */
  listen(options: ListenOptions): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(options.port, options.host, () => {
        this.server.off('error', reject)
        this.address = this.server.address() as AddressInfo
        resolve(this.endpoint)
      })
    })
  }

  get endpoint(): string {
    if (!this.address) throw new Error('the marketplace is not listening')
    const host = this.address.family === 'IPv6' ? `[${this.address.address}]` : this.address.address
    return `http://${host}:${this.address.port}`
  }

  /** Long polls held now (under the per-key and total caps). */
  get heldLongPolls(): number {
    return this.polls.holding
  }

  /** Stops taking connections, ends long polls, lets in-flight requests finish, then closes the database. */
  stop(): Promise<void> {
    this.stopped ??= new Promise<void>((resolve, reject) => {
      clearInterval(this.housekeeping)
      this.lifetime.abort()
      this.closing = true
      for (const request of this.inFlight) request.abort(REQUEST_ENDED)
      this.server.close((error) => {
        if (this.batch) this.commitBatch(this.batch)
        this.db.close()
        if (error && (error as NodeJS.ErrnoException).code !== 'ERR_SERVER_NOT_RUNNING') reject(error)
        else resolve()
      })
      this.server.closeIdleConnections()
    })
    return this.stopped
  }

  private async serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const exchange: Exchange = {ended: this.lazyEndSignal(response), batch: undefined}
    let reply: Reply
    let headers: Readonly<Record<string, string>> = {}
    try {
      reply = await this.process(request, exchange)
    } catch (error) {
      if (error instanceof HttpError) {
        reply = {status: error.status, body: error.toBody()}
        headers = error.headers
      } else {
        this.logError(error)
        reply = {status: 500, body: new HttpError(500, 'internal', 'the marketplace failed; retry with backoff').toBody()}
      }
    }
    try {
      await this.durable(exchange)
    } catch {
      reply = {status: 500, body: new HttpError(500, 'internal', 'the marketplace failed to store this request; retry with backoff').toBody()}
      headers = {}
    }
    if (reply.status === 429) await this.holdBack(Number(headers['retry-after'] ?? 1) * 1000, exchange.ended())
    if (response.destroyed) return
    if (reply.bytes) {
      response.writeHead(reply.status, {
        'content-type': 'application/octet-stream',
        'content-length': String(reply.bytes.byteLength),
        ...(this.closing ? {connection: 'close'} : {}),
      })
      response.end(reply.bytes)
      return
    }
    const text = reply.body === undefined ? '' : JSON.stringify(reply.body)
    response.writeHead(reply.status, {
      ...headers,
      ...(text ? {'content-type': 'application/json; charset=utf-8'} : {}),
      'content-length': String(Buffer.byteLength(text)),
      ...(this.closing ? {connection: 'close'} : {}),
    })
    response.end(text)
  }

  /** Resolves once what the request wrote is committed: its own batch, and the one open now (a handler's writes after an await). */
  private async durable(exchange: Exchange): Promise<void> {
    if (exchange.batch) await exchange.batch.committed
    if (this.batch) await this.batch.committed
  }

  /**
   * The signal that ends a long poll when its client goes away or the server shuts down (stop() aborts every one in
   * flight), made only when asked for: most requests never wait, and a controller, its listener and its place in the
   * in-flight set were a measurable part of a request's cost.
   */
  private lazyEndSignal(response: ServerResponse): () => AbortSignal {
    let ended: AbortController | undefined
    return () => {
      if (ended) return ended.signal
      const controller = (ended = new AbortController())
      if (this.closing || response.destroyed) {
        controller.abort(REQUEST_ENDED)
        return controller.signal
      }
      this.inFlight.add(controller)
      response.once('close', () => {
        controller.abort(REQUEST_ENDED)
        this.inFlight.delete(controller)
      })
      return controller.signal
    }
  }

  /**
   * Group commit: the requests that arrive in one turn of the event loop write into one SQLite transaction, committed
   * once they have all run (SQLite's cost is per commit, not per row); each answer waits for that commit. A request
   * that finds SQLite rolled the transaction back under it (a full disk) fails the whole batch: every answer waiting
   * on it is a 500, never a success whose writes were lost.
   */
  private joinBatch(): WriteBatch {
    // Rolled back under a handler that wrote after an await: nothing more joins it.
    if (this.batch && !this.db.inTransaction) this.loseBatch(this.batch)
    if (this.batch) return this.batch
    this.db.exec('BEGIN IMMEDIATE')
    let settle!: (error?: unknown) => void
    const committed = new Promise<void>((resolve, reject) => {
      settle = (error) => (error === undefined ? resolve() : reject(error as Error))
    })
    // A batch no answer waits on must not fail as an unhandled rejection.
    committed.catch(() => undefined)
    const batch: WriteBatch = {committed, settle, lost: undefined}
    this.batch = batch
    setImmediate(() => this.commitBatch(batch))
    return batch
  }

  /** Commits the batch if it is still the open one (once: a settled promise ignores a second settle). */
  private commitBatch(batch: WriteBatch): void {
    if (this.batch !== batch) return batch.settle(batch.lost)
    this.batch = undefined
    // Only this commits a batch's transaction: gone before it, SQLite rolled it back.
    if (!this.db.inTransaction) {
      this.nonces.rolledBack()
      return batch.settle(new Error(ROLLED_BACK))
    }
    try {
      this.db.exec('COMMIT')
      this.nonces.committed()
      batch.settle()
    } catch (error) {
      this.logError(error)
      if (this.db.inTransaction) this.db.exec('ROLLBACK')
      this.nonces.rolledBack()
      batch.settle(error)
    }
  }

  private loseBatch(batch: WriteBatch): void {
    batch.lost = new Error(ROLLED_BACK)
    if (this.batch !== batch) return
    this.batch = undefined
    this.nonces.rolledBack()
  }

  /** Waits before a 429 goes out (see RATE_LIMITED_ANSWER_DELAY_MS), unless too many already wait or the request ends. */
  private async holdBack(retryAfterMs: number, ended: AbortSignal): Promise<void> {
    if (this.delayedRefusals >= MAX_DELAYED_REFUSALS || ended.aborted) return
    this.delayedRefusals++
    try {
      await sleep(Math.min(RATE_LIMITED_ANSWER_DELAY_MS, retryAfterMs), undefined, {signal: ended}).catch(() => undefined)
    } finally {
      this.delayedRefusals--
    }
  }

  private async process(request: IncomingMessage, exchange: Exchange): Promise<Reply> {
    const pathAndQuery = request.url ?? '/'
    const queryStart = pathAndQuery.indexOf('?')
    const path = queryStart === -1 ? pathAndQuery : pathAndQuery.slice(0, queryStart)
    if (!path.startsWith(API_PREFIX + '/')) throw new HttpError(404, 'not_found', `every path is under ${API_PREFIX}`)
    const method = request.method ?? 'GET'
    const {route, params} = match(this.routes, method, path.slice(API_PREFIX.length))
    // Before the body and any signature: the cheapest refusal comes first.
    const address = request.socket.remoteAddress ?? ''
    this.addressLimiter.take(address, this.clock.now())
    const body = await readBody(request, route.rawBodyLimit ?? MAX_BODY_BYTES)
    const now = this.clock.now()

    let identity: Identity | undefined
    let verified: ReturnType<typeof verifyRequestSignature> | undefined
    if (route.access.kind !== 'public') {
      verified = verifyRequestSignature({headers: request.headers, method, pathAndQuery, body}, now)
      this.keyLimiter.take(verified.signer, now)
      identity = this.identities.resolve(verified.signer)
      if (route.access.kind === 'provider') authorizeForProvider(identity, params.pk ?? '', route.access.rule, now)
      if (route.access.kind === 'agent') authorizeForProvider(identity, delegatedProvider(identity), {kind: 'agent', permission: route.access.permission}, now)
    }
    // The nonce and what the handler writes before its first await commit together, with the batch, before the answer
    // goes out. Committed whatever the handler throws, as each write was on its own before. A handler's own
    // transaction nests as a savepoint.
    const batch = (exchange.batch = this.joinBatch())
    try {
      // Only once the signer may make this request: a flood signed by unknown keys stores nothing.
      if (verified) this.nonces.use(verified.signer, verified.nonce, now)
      const holder = identity?.pubkey ?? `address ${address}`
      const query = parseQueryString(queryStart === -1 ? '' : pathAndQuery.slice(queryStart + 1))
      const json = route.rawBodyLimit === undefined ? parseJsonBody(body) : undefined
      return route.handle({
        params,
        query,
        body: json,
        rawBody: body,
        identity,
        // Made only for the routes that keep it (§6): for the others, a base64 copy of the body would be garbage.
        get signed(): SignedRequestRecord | undefined {
          return verified && signedRequestRecord(verified, body)
        },
        get signal() {
          return exchange.ended()
        },
        hold: () => this.polls.enter(holder),
      })
    } finally {
      // SQLite rolled the transaction back itself (a full disk): the batch's earlier writes are gone with it.
      if (!this.db.inTransaction && this.batch === batch) this.loseBatch(batch)
    }
  }
}

/** Opens the database and starts serving; the caller stops it with `stop()`. */
export async function startMarketplace(options: MarketplaceOptions & ListenOptions): Promise<MarketplaceServer> {
  const server = new MarketplaceServer(options)
  try {
    await server.listen(options)
  } catch (error) {
    await server.stop()
    throw error
  }
  return server
}
