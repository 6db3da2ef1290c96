import {setTimeout as sleep} from 'node:timers/promises'
import {z} from 'zod'

import {ProvisionAbortedError} from '../provisioner.js'
import {ErrorEnvelope} from './schemas.js'

/** Error codes after which the same request may succeed later (https://docs.hetzner.cloud/#errors). */
const RETRYABLE_CODES = new Set(['rate_limit_exceeded', 'resource_unavailable', 'conflict', 'locked', 'service_error', 'server_error', 'maintenance', 'timeout', 'bad_gateway', 'unavailable', 'robot_unavailable'])
const Paginated = z.looseObject({meta: z.looseObject({pagination: z.looseObject({next_page: z.number().int().nullable()})}).optional()})
const MAX_RATE_LIMIT_WAITS = 8
const MAX_TRANSIENT_RETRIES = 3
/** The shortest pause between requests once the bucket is empty. */
const MIN_TOKEN_WAIT_MS = 100

/** A failed API call: the HTTP status and Hetzner's error code and message when the API answered. */
export class HetznerApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
    options: {cause?: unknown} = {},
  ) {
    super(message, options)
    this.name = 'HetznerApiError'
  }

  get retryable(): boolean {
    if (this.status === undefined) return true
    if (this.code !== undefined && RETRYABLE_CODES.has(this.code)) return true
    return this.status >= 500
  }
}

export interface HetznerCall {
  method: 'GET' | 'POST' | 'DELETE'
  path: string
  query?: Record<string, string | number>
  body?: unknown
  /** Statuses that are answers, not errors (404 when looking something up). */
  accept?: readonly number[]
}

/**
 * The Hetzner Cloud API with a bearer token. It keeps to the rate limit the answers announce (RateLimit-Limit,
 * -Remaining, -Reset: the bucket refills one request every (Reset - now) / Limit): with the bucket empty it waits
 * for the next request's token, and a 429 waits the same before trying again. GETs and DELETEs are retried after a
 * 5xx or a network error; a POST is not (the caller finds out by name what a lost answer made).
 */
export class HetznerApi {
  private notBefore = 0

  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
    private readonly requestTimeoutMs: number,
  ) {}

  /** Calls the API and parses the answer; an accepted error status comes back as undefined. */
  async json<S extends z.ZodType>(what: string, schema: S, call: HetznerCall, signal?: AbortSignal): Promise<z.infer<S> | undefined> {
    const answer = await this.call(what, call, signal)
    if (answer === undefined) return undefined
    const parsed = schema.safeParse(answer)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'answer'
      throw new HetznerApiError(`${what}: unexpected answer from the Hetzner API (${where}: ${issue?.message ?? 'invalid'})`)
    }
    return parsed.data
  }

  /** Every page of a list endpoint, concatenated. */
  async all<S extends z.ZodType, T>(what: string, schema: S, path: string, pick: (page: z.infer<S>) => T[], query: Record<string, string> = {}, signal?: AbortSignal): Promise<T[]> {
    const items: T[] = []
    for (let page: number | null = 1; page !== null; ) {
      const answer: z.infer<S> | undefined = await this.json(what, schema, {method: 'GET', path, query: {...query, page, per_page: 50}}, signal)
      if (answer === undefined) break
      items.push(...pick(answer))
      page = Paginated.parse(answer).meta?.pagination.next_page ?? null
    }
    return items
  }

  /** The parsed JSON body of a 2xx answer (null for 204), undefined for an accepted status; otherwise a HetznerApiError. */
  async call(what: string, call: HetznerCall, signal?: AbortSignal): Promise<unknown> {
    const idempotent = call.method !== 'POST'
    for (let attempt = 0, rateLimited = 0; ; attempt++) {
      if (signal?.aborted) throw new ProvisionAbortedError(what, {cause: signal.reason})
      await this.waitForToken(what, signal)
      let response: Response
      try {
        response = await this.send(call, signal)
      } catch (error) {
        if (signal?.aborted) throw new ProvisionAbortedError(what, {cause: signal.reason})
        const failure = new HetznerApiError(`${what}: cannot reach the Hetzner API at ${this.baseUrl}: ${error instanceof Error ? error.message : String(error)}`, undefined, undefined, {cause: error})
        if (!idempotent || attempt >= MAX_TRANSIENT_RETRIES) throw failure
        await this.backoff(attempt, what, signal)
        continue
      }
      this.noteRateLimit(response.headers)
      const text = await response.text()
      if (response.ok) return text === '' ? null : parseJson(text, what)
      if (call.accept?.includes(response.status)) return undefined
      const envelope = ErrorEnvelope.safeParse(safeJson(text))
      const code = envelope.success ? envelope.data.error.code : undefined
      const message = envelope.success ? envelope.data.error.message : text.slice(0, 200)
      const error = new HetznerApiError(`${what}: Hetzner answered ${response.status}${code ? ` ${code}` : ''}: ${message}`, response.status, code)
      if (response.status === 429 && rateLimited < MAX_RATE_LIMIT_WAITS) {
        rateLimited++
        // A refused request was not carried out, so even a POST may be sent again.
        this.notBefore = Math.max(this.notBefore, Date.now() + this.tokenWaitMs(response.headers))
        attempt--
        continue
      }
      if (idempotent && response.status >= 500 && attempt < MAX_TRANSIENT_RETRIES) {
        await this.backoff(attempt, what, signal)
        continue
      }
      throw error
    }
  }

  private send(call: HetznerCall, signal?: AbortSignal): Promise<Response> {
    const url = new URL(this.baseUrl.replace(/\/$/, '') + call.path)
    for (const [key, value] of Object.entries(call.query ?? {})) url.searchParams.set(key, String(value))
    const timeout = AbortSignal.timeout(this.requestTimeoutMs)
    return fetch(url, {
      method: call.method,
      headers: {Authorization: `Bearer ${this.token}`, ...(call.body === undefined ? {} : {'Content-Type': 'application/json'})},
      body: call.body === undefined ? undefined : JSON.stringify(call.body),
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    })
  }

  /** With the bucket empty, the next request waits for one token to refill. */
  private noteRateLimit(headers: Headers): void {
    if (Number(headers.get('ratelimit-remaining')) === 0 && headers.get('ratelimit-remaining') !== null) {
      this.notBefore = Math.max(this.notBefore, Date.now() + this.tokenWaitMs(headers))
    }
  }

  private tokenWaitMs(headers: Headers): number {
    const limit = Number(headers.get('ratelimit-limit'))
    const reset = Number(headers.get('ratelimit-reset'))
    if (!(limit > 0) || !(reset > 0)) return 1000
    return Math.max(MIN_TOKEN_WAIT_MS, (reset * 1000 - Date.now()) / limit)
  }

  private async waitForToken(what: string, signal?: AbortSignal): Promise<void> {
    const wait = this.notBefore - Date.now()
    if (wait <= 0) return
    try {
      await sleep(wait, undefined, {signal})
    } catch (error) {
      throw new ProvisionAbortedError(what, {cause: error})
    }
  }

  private async backoff(attempt: number, what: string, signal?: AbortSignal): Promise<void> {
    const delay = Math.min(4000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2)
    try {
      await sleep(delay, undefined, {signal})
    } catch (error) {
      throw new ProvisionAbortedError(what, {cause: error})
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text)
  } catch (error) {
    throw new HetznerApiError(`${what}: the Hetzner API answered something that is not JSON`, undefined, undefined, {cause: error})
  }
}
