import {setTimeout as sleep} from 'node:timers/promises'
import type {z} from 'zod'

import {UserError} from '../errors.js'
import {printable} from '../printable.js'
import {hostHeaderOf, signRequest, type KeyPair} from '../signing.js'
import {CutOffError, exchange, NoAnswerError, type Answer, type AnswerHeaders} from './http-exchange.js'
import {ApiError} from './api-error.js'
import {checkEndpoint} from './endpoint.js'
import {ApiErrorBody} from './schemas.js'

export const API_PREFIX = '/api/v1'

/**
 * How large a marketplace answer may be before it is an error rather than memory spent (a lying or broken
 * marketplace must not take the agent down). `object`: one resource (a contract, a lock, a stake, a report); a
 * contract carries at most two copies of a body of at most 1 MiB (§1): its `instance_config` and the renter's
 * signed `request` (§6). `list`: the lists (contracts, offerings, open orders, reports, disputes, delegations).
 */
export const RESPONSE_LIMITS = {object: 4 * 1024 * 1024, list: 32 * 1024 * 1024, bytes: 16 * 1024 * 1024} as const

/** The longest `Retry-After` honoured: a longer one waits this long (a marketplace can't park a client for days). */
export const MAX_RETRY_AFTER_MS = 300_000

export interface RetryPolicy {
  /** Attempts after the first; 0 turns retries off. */
  retries: number
  baseDelayMs: number
  maxDelayMs: number
}

export const DEFAULT_RETRY: RetryPolicy = {retries: 4, baseDelayMs: 250, maxDelayMs: 10_000}

export interface ApiClientOptions {
  endpoint: string
  /** Signs every request that isn't marked public. */
  key?: KeyPair
  timeoutMs?: number
  retry?: RetryPolicy
  userAgent?: string
  /**
   * Allows an `http://` endpoint that is not loopback ([marketplace] allow_insecure_http, `--allow-insecure-http`).
   * Without it only https:// and loopback http:// (127.0.0.0/8, ::1, localhost) are accepted: signed requests and
   * the answers the agent acts on must not cross a network in clear.
   */
  allowInsecureHttp?: boolean
}

export interface RequestOptions<T> {
  schema: z.ZodType<T>
  body?: unknown
  /** Bytes sent as the body (`application/octet-stream`) instead of `body` as JSON (PROTOCOL §12 programs and outputs). */
  bytes?: Uint8Array
  query?: Record<string, string | number | undefined>
  /** Public GETs are sent unsigned. */
  public?: boolean
  signal?: AbortSignal
  retry?: RetryPolicy
  /** Extra time on top of the request timeout, for long polls the server holds on purpose. */
  extraTimeoutMs?: number
  /** The largest answer body read (RESPONSE_LIMITS.object unless the route answers a list). */
  maxResponseBytes?: number
  /** Read the answer's body and drop it (`bytes` empty, `size` its length): the network benchmark's bulk download. */
  discardBody?: boolean
}

function suggestionFor(status: number, code: string): string | undefined {
  if (status === 401) return code === 'stale_timestamp' ? 'check this host\'s clock (timedatectl; enable NTP)' : 'check that the key in your config is the one registered'
  if (status === 403) return 'check the agent key\'s delegation with `outpost doctor --verify-api`'
  if (status === 429) return 'the marketplace is rate limiting this key: wait and try again'
  if (status >= 500) return 'the marketplace failed: try again later'
  return undefined
}

/** Retry-After in seconds or as an HTTP date, bounded to 0..MAX_RETRY_AFTER_MS; undefined when absent or unreadable. */
export function parseRetryAfter(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined
  const text = header.trim()
  const seconds = /^\d+(\.\d+)?$/.test(text) ? Number(text) * 1000 : undefined
  // An HTTP date names a weekday and a month; Date.parse alone would read '-3' as a year.
  const date = seconds === undefined && /[a-z]/i.test(text) ? Date.parse(text) : Number.NaN
  const delay = seconds ?? (Number.isNaN(date) ? undefined : date - now)
  if (delay === undefined || !Number.isFinite(delay)) return undefined
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, delay))
}

/** The client options a [marketplace] config section gives: where, how long to wait, whether plain HTTP is allowed. */
export function marketplaceClientOptions(marketplace: {
  endpoint: string
  request_timeout_seconds: number
  allow_insecure_http?: boolean
}): Pick<ApiClientOptions, 'endpoint' | 'timeoutMs' | 'allowInsecureHttp'> {
  return {endpoint: marketplace.endpoint, timeoutMs: marketplace.request_timeout_seconds * 1000, allowInsecureHttp: marketplace.allow_insecure_http ?? false}
}

function isOctetStream(headers: AnswerHeaders): boolean {
  return headers.get('content-type')?.startsWith('application/octet-stream') ?? false
}

/** Capped exponential backoff with full jitter. */
export function backoffDelay(attempt: number, policy: RetryPolicy, random = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt)
  return Math.round(ceiling / 2 + random() * (ceiling / 2))
}

/**
 * The marketplace client: signed requests (PROTOCOL §2, v2: the Host is signed), retries (§4), typed errors,
 * schema-checked and size-bounded answers. It never follows a redirect: signed headers go only to the endpoint
 * configured, and a 3xx is an error naming where it pointed.
 */
export class ApiClient {
  readonly endpoint: string
  /** The Host header every request carries, and signs. */
  readonly host: string
  private readonly key: KeyPair | undefined
  private readonly timeoutMs: number
  private readonly retry: RetryPolicy
  private readonly userAgent: string

  constructor(options: ApiClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, '')
    this.host = hostHeaderOf(checkEndpoint(this.endpoint, options.allowInsecureHttp))
    this.key = options.key
    this.timeoutMs = options.timeoutMs ?? 30_000
    this.retry = options.retry ?? DEFAULT_RETRY
    this.userAgent = options.userAgent ?? 'outpost-cli'
  }

  /** Path under /api/v1 with its query, exactly as it is sent and signed. */
  static pathWithQuery(path: string, query?: RequestOptions<unknown>['query']): string {
    const params = new URLSearchParams()
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) params.set(key, String(value))
    const search = params.toString()
    return API_PREFIX + path + (search ? `?${search}` : '')
  }

  async request<T>(method: string, path: string, options: RequestOptions<T>): Promise<T> {
    const policy = options.retry ?? this.retry
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(method, path, options)
      } catch (error) {
        if (!(error instanceof ApiError) || !error.retryable || attempt >= policy.retries || options.signal?.aborted) throw error
        // A POST the marketplace answered but whose answer could not be read may have taken effect: the caller
        // re-reads the state instead of this loop creating a second contract or stake.
        if (error.unknown && error.status !== 0 && method === 'POST') throw error
        const delay = Math.max(error.retryAfterMs ?? 0, backoffDelay(attempt, policy))
        await sleep(delay, undefined, {signal: options.signal}).catch(() => {
          throw error
        })
      }
    }
  }

  get<T>(path: string, options: RequestOptions<T>): Promise<T> {
    return this.request('GET', path, options)
  }

  post<T>(path: string, options: RequestOptions<T>): Promise<T> {
    return this.request('POST', path, options)
  }

  put<T>(path: string, options: RequestOptions<T>): Promise<T> {
    return this.request('PUT', path, options)
  }

  delete<T>(path: string, options: RequestOptions<T>): Promise<T> {
    return this.request('DELETE', path, options)
  }

  /**
   * One attempt. Also used by `doctor --verify-api` to read the server's Date header. Throws an ApiError for no
   * answer, a redirect, and a body over the limit; `json` is undefined when the body is empty, not JSON, or bytes.
   */
  async raw(method: string, path: string, options: Omit<RequestOptions<unknown>, 'schema'>): Promise<{status: number; headers: AnswerHeaders; json: unknown; bytes: Buffer; size: number; resent: boolean}> {
    const pathAndQuery = ApiClient.pathWithQuery(path, options.query)
    const body = options.bytes ?? (options.body === undefined ? undefined : JSON.stringify(options.body))
    // The Host sent is the one signed (§2 v2), whatever the transport would derive from the URL.
    const sent: Record<string, string> = {host: this.host, 'user-agent': this.userAgent, accept: 'application/json'}
    if (body !== undefined) sent['content-type'] = options.bytes ? 'application/octet-stream' : 'application/json'
    if (!options.public) {
      if (!this.key) throw new UserError(`${method} ${path} must be signed and no key was given`, {code: 'key_required'})
      Object.assign(sent, signRequest(this.key, {method, host: this.host, pathAndQuery, body}))
    }
    const timeoutMs = this.timeoutMs + (options.extraTimeoutMs ?? 0)
    const limit = options.maxResponseBytes ?? RESPONSE_LIMITS.object
    let answer: Answer
    try {
      answer = await exchange(new URL(this.endpoint + pathAndQuery), {method, headers: sent, ...(body === undefined ? {} : {body}), ...(options.signal ? {signal: options.signal} : {}), timeoutMs, limit, ...(options.discardBody ? {discardBody: true} : {})})
    } catch (error) {
      const timedOut = () => (error instanceof CutOffError || error instanceof NoAnswerError) && error.timedOut && !options.signal?.aborted
      if (error instanceof CutOffError) {
        throw new ApiError({
          status: error.status,
          apiCode: timedOut() ? 'timeout' : 'unreadable_response',
          message: `${method} ${path}: the answer (${error.status}) from ${this.endpoint} was cut off; whether it took effect is unknown`,
          suggestion: 'check [marketplace] endpoint and this host\'s network',
          cause: error,
          unknown: true,
        })
      }
      throw new ApiError({
        status: 0,
        apiCode: timedOut() ? 'timeout' : 'unreachable',
        message: timedOut() ? `${method} ${path}: no answer from ${this.endpoint} within ${this.timeoutMs / 1000} s` : `${method} ${path}: cannot reach ${this.endpoint}`,
        suggestion: 'check [marketplace] endpoint and this host\'s network',
        cause: error,
      })
    }
    const {status, headers} = answer
    if (status >= 300 && status < 400) {
      const location = headers.get('location')
      throw new ApiError({
        status,
        apiCode: 'redirected',
        message: `${method} ${path}: the marketplace answered ${status}, a redirect to ${location === null ? '(no Location)' : printable(location, {max: 200})}; signed requests are never sent on`,
        suggestion: 'set [marketplace] endpoint to the URL the marketplace documents (https://, without /api/v1)',
      })
    }
    const bytes = answer.body
    if (bytes === undefined) {
      throw new ApiError({
        status,
        apiCode: 'response_too_large',
        message: `${method} ${path}: the answer (${status}) is larger than ${limit} bytes: not read`,
        suggestion: 'check that [marketplace] endpoint points at an Outpost protocol v1 API',
        unknown: true,
      })
    }
    let json: unknown
    if (bytes.length > 0 && !isOctetStream(headers)) {
      try {
        json = JSON.parse(bytes.toString('utf8'))
      } catch {
        json = undefined
      }
    }
    return {status, headers, json, bytes, size: answer.size, resent: answer.resent}
  }

  private async once<T>(method: string, path: string, options: RequestOptions<T>): Promise<T> {
    const {status, headers, json, bytes, resent} = await this.raw(method, path, options)
    if (status >= 200 && status < 300) {
      // An octet-stream answer (§12 programs, inputs, outputs) is given to the schema as its bytes.
      const parsed = options.schema.safeParse(status === 204 ? undefined : isOctetStream(headers) ? bytes : json)
      if (parsed.success) return parsed.data
      const issue = parsed.error.issues[0]
      throw new ApiError({
        status,
        apiCode: 'unexpected_response',
        message: `${method} ${path}: the marketplace answered ${status} with a body that could not be read (${printable(issue?.path.join('.') || 'body', {max: 200})}: ${printable(issue?.message ?? 'invalid', {max: 200})}); whether it took effect is unknown`,
        suggestion: 'check that [marketplace] endpoint points at an Outpost protocol v1 API',
        unknown: true,
      })
    }
    const error = ApiErrorBody.safeParse(json)
    const apiCode = error.success ? printable(error.data.error.code, {max: 64}) : status >= 500 ? 'internal' : `http_${status}`
    if (resent && status === 401 && apiCode === 'replayed_nonce') {
      // The connection was reset after the request went out: the copy sent again is a replay because the first one
      // reached the marketplace, whose answer was lost. Not a refusal: unknown, as a cut-off answer is.
      throw new ApiError({
        status,
        apiCode: 'unreadable_response',
        message: `${method} ${path}: the connection to ${this.endpoint} was reset before the answer, after the request reached it; whether it took effect is unknown`,
        suggestion: 'check [marketplace] endpoint and this host\'s network',
        unknown: true,
      })
    }
    throw new ApiError({
      status,
      apiCode,
      message: `${method} ${path}: ${status} ${apiCode}${error.success ? `: ${printable(error.data.error.message, {max: 500})}` : ''}`,
      details: error.success ? error.data.error.details : undefined,
      retryAfterMs: status === 429 || status === 503 ? parseRetryAfter(headers.get('retry-after')) : undefined,
      suggestion: suggestionFor(status, apiCode),
    })
  }
}
