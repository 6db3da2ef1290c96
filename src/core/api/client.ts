import {setTimeout as sleep} from 'node:timers/promises'
import type {z} from 'zod'

import {ExitCode, UserError, type ExitCodeValue} from '../errors.js'
import {signRequest, type KeyPair} from '../signing.js'
import {ApiErrorBody} from './schemas.js'

export const API_PREFIX = '/api/v1'

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
}

function exitFor(status: number): ExitCodeValue {
  if (status === 401 || status === 403) return ExitCode.refused
  return ExitCode.failed
}

/** A marketplace answer that is an error (PROTOCOL §4), or a failure to get any answer (status 0). */
export class ApiError extends UserError {
  readonly status: number
  readonly apiCode: string
  readonly details: unknown[] | undefined
  readonly retryAfterMs: number | undefined

  constructor(init: {status: number; apiCode: string; message: string; details?: unknown[]; retryAfterMs?: number; suggestion?: string; cause?: unknown}) {
    super(init.message, {
      code: init.apiCode,
      exit: init.status === 0 ? ExitCode.unreachable : exitFor(init.status),
      suggestion: init.suggestion,
      cause: init.cause,
    })
    this.name = 'ApiError'
    this.status = init.status
    this.apiCode = init.apiCode
    this.details = init.details
    this.retryAfterMs = init.retryAfterMs
  }

  /** PROTOCOL §4: retry 429, 5xx and network errors; never another 4xx. */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500
  }
}

function suggestionFor(status: number, code: string): string | undefined {
  if (status === 401) return code === 'stale_timestamp' ? 'check this host\'s clock (timedatectl; enable NTP)' : 'check that the key in your config is the one registered'
  if (status === 403) return 'check the agent key\'s delegation with `outpost doctor --verify-api`'
  if (status === 429) return 'the marketplace is rate limiting this key: wait and try again'
  if (status >= 500) return 'the marketplace failed: try again later'
  return undefined
}

function parseRetryAfter(header: string | null): number | undefined {
  if (!header) return undefined
  const seconds = Number(header)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const date = Date.parse(header)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}

function isOctetStream(headers: Headers): boolean {
  return headers.get('content-type')?.startsWith('application/octet-stream') ?? false
}

/** Capped exponential backoff with full jitter. */
export function backoffDelay(attempt: number, policy: RetryPolicy, random = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt)
  return Math.round(ceiling / 2 + random() * (ceiling / 2))
}

/** The marketplace client: signed requests (PROTOCOL §2), retries (§4), typed errors, schema-checked answers. */
export class ApiClient {
  readonly endpoint: string
  private readonly key: KeyPair | undefined
  private readonly timeoutMs: number
  private readonly retry: RetryPolicy
  private readonly userAgent: string

  constructor(options: ApiClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, '')
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

  /** One attempt. Also used by `doctor --verify-api` to read the server's Date header. */
  async raw(method: string, path: string, options: Omit<RequestOptions<unknown>, 'schema'>): Promise<{status: number; headers: Headers; json: unknown; bytes: Buffer}> {
    const pathAndQuery = ApiClient.pathWithQuery(path, options.query)
    const body = options.bytes ?? (options.body === undefined ? undefined : JSON.stringify(options.body))
    const headers: Record<string, string> = {'user-agent': this.userAgent, accept: 'application/json'}
    if (body !== undefined) headers['content-type'] = options.bytes ? 'application/octet-stream' : 'application/json'
    if (!options.public) {
      if (!this.key) throw new UserError(`${method} ${path} must be signed and no key was given`, {code: 'key_required'})
      Object.assign(headers, signRequest(this.key, {method, pathAndQuery, body}))
    }
    const timeout = AbortSignal.timeout(this.timeoutMs + (options.extraTimeoutMs ?? 0))
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout
    let response: Response
    try {
      response = await fetch(this.endpoint + pathAndQuery, {method, headers, body, signal})
    } catch (error) {
      const timedOut = timeout.aborted && !options.signal?.aborted
      throw new ApiError({
        status: 0,
        apiCode: timedOut ? 'timeout' : 'unreachable',
        message: timedOut ? `${method} ${path}: no answer from ${this.endpoint} within ${this.timeoutMs / 1000} s` : `${method} ${path}: cannot reach ${this.endpoint}`,
        suggestion: 'check [marketplace] endpoint and this host\'s network',
        cause: error,
      })
    }
    const bytes = Buffer.from(await response.arrayBuffer().catch(() => new ArrayBuffer(0)))
    let json: unknown
    if (bytes.length > 0 && !isOctetStream(response.headers)) {
      try {
        json = JSON.parse(bytes.toString('utf8'))
      } catch {
        json = undefined
      }
    }
    return {status: response.status, headers: response.headers, json, bytes}
  }

  private async once<T>(method: string, path: string, options: RequestOptions<T>): Promise<T> {
    const {status, headers, json, bytes} = await this.raw(method, path, options)
    if (status >= 200 && status < 300) {
      if (status === 204) return options.schema.parse(undefined)
      // An octet-stream answer (§12 programs, inputs, outputs) is given to the schema as its bytes.
      const parsed = options.schema.safeParse(isOctetStream(headers) ? bytes : json)
      if (parsed.success) return parsed.data
      const issue = parsed.error.issues[0]
      throw new ApiError({
        status,
        apiCode: 'unexpected_response',
        message: `${method} ${path}: the marketplace answered with an unexpected body (${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'})`,
        suggestion: 'check that [marketplace] endpoint points at an Outpost protocol v1 API',
      })
    }
    const error = ApiErrorBody.safeParse(json)
    const apiCode = error.success ? error.data.error.code : status >= 500 ? 'internal' : `http_${status}`
    throw new ApiError({
      status,
      apiCode,
      message: `${method} ${path}: ${status} ${apiCode}${error.success ? `: ${error.data.error.message}` : ''}`,
      details: error.success ? error.data.error.details : undefined,
      retryAfterMs: status === 429 ? parseRetryAfter(headers.get('retry-after')) : undefined,
      suggestion: suggestionFor(status, apiCode),
    })
  }
}
