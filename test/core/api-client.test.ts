import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'

import {ApiClient, marketplaceClientOptions, MAX_RETRY_AFTER_MS, parseRetryAfter, RESPONSE_LIMITS} from '../../src/core/api/client.js'
import {ApiError} from '../../src/core/api/api-error.js'
import {checkEndpoint} from '../../src/core/api/endpoint.js'
import {ProviderApi} from '../../src/core/api/provider.js'
import {HeartbeatResponse} from '../../src/core/api/schemas.js'
import {applyEnvOverrides} from '../../src/core/config/env.js'
import {MarketplaceSection} from '../../src/core/config/schema.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {registerProvider} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/** A marketplace that misbehaves on purpose: each path answers one way, and every request is counted. */
class LyingMarketplace {
  readonly hits = new Map<string, number>()
  readonly hosts: string[] = []
  private readonly server: Server
  endpoint = ''

  constructor(private readonly routes: Record<string, (request: IncomingMessage, response: ServerResponse) => void>) {
    this.server = createServer((request, response) => {
      const path = (request.url ?? '').replace(/\?.*$/, '')
      this.hits.set(path, (this.hits.get(path) ?? 0) + 1)
      this.hosts.push(request.headers.host ?? '')
      const route = this.routes[path]
      if (route) route(request, response)
      else response.writeHead(404).end()
    })
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
    return this
  }

  stop(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

const json = (status: number, body: string, headers: Record<string, string> = {}) => (_request: IncomingMessage, response: ServerResponse) => {
  response.writeHead(status, {'content-type': 'application/json', ...headers}).end(body)
}

const Anything = z.unknown()
const Ok = z.object({ok: z.literal(true)})
const FAST = {retries: 2, baseDelayMs: 1, maxDelayMs: 2}

async function failure(promise: Promise<unknown>): Promise<ApiError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  if (!(error instanceof ApiError)) throw new Error(`expected an ApiError, got ${String(error)}`)
  return error
}

let liar: LyingMarketplace
let elsewhere: LyingMarketplace

beforeAll(async () => {
  elsewhere = await new LyingMarketplace({'/api/v1/stolen': json(200, '{"ok":true}')}).start()
  liar = await new LyingMarketplace({
    '/api/v1/redirect': json(307, '', {location: `${elsewhere.endpoint}/api/v1/stolen`}),
    '/api/v1/huge': json(200, JSON.stringify({ok: true, padding: 'x'.repeat(RESPONSE_LIMITS.object)})),
    '/api/v1/huge-chunked': (_request, response) => {
      response.writeHead(200, {'content-type': 'application/json'})
      for (let index = 0; index < 5; index++) response.write('x'.repeat(RESPONSE_LIMITS.object))
      response.end()
    },
    '/api/v1/garbled': json(200, '{"ok": tr'),
    '/api/v1/wrong-shape': json(200, '{"ok": "yes"}'),
    '/api/v1/cut-off': (_request, response) => {
      response.writeHead(200, {'content-type': 'application/json', 'content-length': '100'})
      response.write('{"ok":')
      setTimeout(() => response.destroy(), 20)
    },
    '/api/v1/refused': json(409, '{"error":{"code":"locked","message":"held by another agent"}}'),
    '/api/v1/slow-down': json(429, '{"error":{"code":"rate_limited","message":"later"}}', {'retry-after': '999999'}),
    '/api/v1/control': json(409, '{"error":{"code":"bad\\u001b[2Jcode","message":"\\u001b[31mred\\u0007"}}'),
  }).start()
})
afterAll(async () => {
  await liar.stop()
  await elsewhere.stop()
})

describe('ApiClient: a redirect is an error, never followed with signed headers', () => {
  it('names the Location and sends nothing there', async () => {
    const client = new ApiClient({endpoint: liar.endpoint, key: generateKeyPair(), retry: FAST})
    const error = await failure(client.post('/redirect', {schema: Anything, body: {amount: '1'}}))
    expect(error.apiCode).toBe('redirected')
    expect(error.status).toBe(307)
    expect(error.message).toContain(`${elsewhere.endpoint}/api/v1/stolen`)
    expect(error.retryable).toBe(false)
    expect(liar.hits.get('/api/v1/redirect')).toBe(1)
    expect(elsewhere.hits.size).toBe(0)
  })
})

describe('ApiClient: plain HTTP only to loopback unless allowed', () => {
  it.each(['http://market.example', 'http://10.0.0.7:8787', 'http://128.0.0.1'])('refuses %s', (endpoint) => {
    expect(() => new ApiClient({endpoint})).toThrow(expect.objectContaining({code: 'insecure_endpoint', exit: 3}))
    expect(new ApiClient({endpoint, allowInsecureHttp: true}).endpoint).toBe(endpoint)
  })

  it.each(['https://market.example', 'http://127.0.0.1:8787', 'http://127.1.2.3', 'http://localhost:1', 'http://[::1]:8787'])('accepts %s', (endpoint) => {
    expect(new ApiClient({endpoint}).endpoint).toBe(endpoint)
  })

  it('refuses what is not an http(s) URL', () => {
    expect(() => checkEndpoint('ftp://market.example')).toThrow(expect.objectContaining({code: 'invalid_endpoint'}))
    expect(() => checkEndpoint('not a url')).toThrow(expect.objectContaining({code: 'invalid_endpoint'}))
  })

  it('takes [marketplace] allow_insecure_http from the config or OUTPOST_MARKETPLACE_ALLOW_INSECURE_HTTP', () => {
    const raw: Record<string, unknown> = {marketplace: {endpoint: 'http://market.example'}}
    expect(MarketplaceSection.parse(raw.marketplace).allow_insecure_http).toBe(false)
    applyEnvOverrides(raw, {OUTPOST_MARKETPLACE_ALLOW_INSECURE_HTTP: 'true'})
    const options = marketplaceClientOptions(MarketplaceSection.parse(raw.marketplace))
    expect(options).toEqual({endpoint: 'http://market.example', timeoutMs: 30_000, allowInsecureHttp: true})
    expect(new ApiClient(options).host).toBe('market.example')
  })
})

describe('ApiClient: answers are read within bounds', () => {
  it.each(['/huge', '/huge-chunked'])('an answer over the limit (%s) is an unknown outcome, not an out-of-memory', async (path) => {
    const client = new ApiClient({endpoint: liar.endpoint, retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1}})
    const error = await failure(client.get(path, {schema: Anything, public: true}))
    expect(error).toMatchObject({apiCode: 'response_too_large', unknown: true, refused: false})
    // A list route reads up to the larger bound.
    const read = z.unknown().transform(() => 'read')
    await expect(client.get(path, {schema: read, public: true, maxResponseBytes: RESPONSE_LIMITS.list})).resolves.toBe('read')
  })

  it('a 2xx whose body does not parse is unknown (retryable, never refused); a POST is not sent again', async () => {
    const client = new ApiClient({endpoint: liar.endpoint, key: generateKeyPair(), retry: FAST})
    for (const path of ['/garbled', '/wrong-shape']) {
      const error = await failure(client.post(path, {schema: Ok, body: {}}))
      expect(error).toMatchObject({status: 200, apiCode: 'unexpected_response', unknown: true, retryable: true, refused: false})
      expect(liar.hits.get(`/api/v1${path}`)).toBe(1)
    }
    // An idempotent read is tried again.
    await failure(client.get('/garbled', {schema: Ok}))
    expect(liar.hits.get('/api/v1/garbled')).toBe(1 + 1 + FAST.retries)
  })

  it('an answer cut off mid-body is unknown', async () => {
    const client = new ApiClient({endpoint: liar.endpoint, key: generateKeyPair(), retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1}})
    const error = await failure(client.put('/cut-off', {schema: Ok, body: {status: 'provisioned'}}))
    expect(error).toMatchObject({status: 200, apiCode: 'unreadable_response', unknown: true})
  })

  it('a readable 4xx is a refusal, and known', async () => {
    const client = new ApiClient({endpoint: liar.endpoint, key: generateKeyPair(), retry: FAST})
    const error = await failure(client.post('/refused', {schema: Ok}))
    expect(error).toMatchObject({status: 409, apiCode: 'locked', unknown: false, refused: true, retryable: false})
  })

  it('strips terminal control characters from what the marketplace wrote', async () => {
    const client = new ApiClient({endpoint: liar.endpoint, key: generateKeyPair(), retry: FAST})
    const error = await failure(client.post('/control', {schema: Ok}))
    expect(error.apiCode).toBe('bad?[2Jcode')
    expect([...error.message].some((character) => character.charCodeAt(0) < 0x20)).toBe(false)
  })

  it('bounds Retry-After, in seconds or as a date', async () => {
    const client = new ApiClient({endpoint: liar.endpoint, key: generateKeyPair(), retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1}})
    expect((await failure(client.post('/slow-down', {schema: Ok}))).retryAfterMs).toBe(MAX_RETRY_AFTER_MS)
    const now = Date.parse('2030-01-01T00:00:00Z')
    expect(parseRetryAfter('Tue, 01 Jan 2036 00:00:00 GMT', now)).toBe(MAX_RETRY_AFTER_MS)
    expect(parseRetryAfter('Tue, 01 Jan 2030 00:00:05 GMT', now)).toBe(5000)
    expect(parseRetryAfter('2.5')).toBe(2500)
    expect(parseRetryAfter('-3')).toBeUndefined()
    expect(parseRetryAfter('soon')).toBeUndefined()
  })

  it('reads next_heartbeat_seconds as a number, for the agent to judge against 10-3600 (test/agent/agent.test.ts)', () => {
    expect(HeartbeatResponse.parse({acknowledged: true, next_heartbeat_seconds: 90}).next_heartbeat_seconds).toBe(90)
    expect(HeartbeatResponse.safeParse({acknowledged: true, next_heartbeat_seconds: 'soon'}).success).toBe(false)
  })
})

describe('ApiClient: a kept-alive connection reset after the request went through', () => {
  it('takes the replay its identical resend meets for an unknown outcome, never a refusal: a PUT is tried again, a POST is not', async () => {
    const nonces: string[] = []
    const seenOn = new Map<object, number>()
    // Like a proxy that drops a kept-alive connection once the marketplace has the request: the second request of a
    // connection is taken (its nonce stored) and the connection reset before any answer; a nonce seen before is a
    // replay, as the devnet answers it.
    const marketplace = createServer((request, response) => {
      const nonce = String(request.headers['x-outpost-nonce'])
      const replay = nonces.includes(nonce)
      nonces.push(nonce)
      const served = (seenOn.get(request.socket) ?? 0) + 1
      seenOn.set(request.socket, served)
      request.resume()
      request.on('end', () => {
        if (replay) return void response.writeHead(401, {'content-type': 'application/json'}).end('{"error":{"code":"replayed_nonce","message":"this nonce was already used by this key"}}')
        if (served === 2) return void request.socket.destroy()
        response.writeHead(200, {'content-type': 'application/json'}).end('{"ok":true}')
      })
    })
    await new Promise<void>((resolve) => marketplace.listen(0, '127.0.0.1', resolve))
    try {
      const client = new ApiClient({endpoint: `http://127.0.0.1:${(marketplace.address() as AddressInfo).port}`, key: generateKeyPair(), retry: FAST})
      await client.put('/first', {schema: Ok, body: {}})
      await expect(client.put('/provisioning', {schema: Ok, body: {}})).resolves.toEqual({ok: true})
      // Taken, reset, resent identical (refused as a replay), then signed afresh and answered.
      expect(nonces.slice(1)).toHaveLength(3)
      expect(nonces[2]).toBe(nonces[1])
      expect(nonces[3]).not.toBe(nonces[1])

      await client.put('/first', {schema: Ok, body: {}})
      const error = await failure(client.post('/contracts', {schema: Ok, body: {}}))
      expect(error).toMatchObject({status: 401, apiCode: 'unreadable_response', unknown: true, refused: false})
    } finally {
      marketplace.closeAllConnections()
      marketplace.close()
    }
  })
})

describe('ApiClient against the devnet: §2 v2 signs the Host it sends', () => {
  let market: Devnet

  beforeAll(async () => {
    market = await startDevnet({heartbeatSeconds: 1})
  })
  afterAll(() => market.stop())

  it('signs the Host header exactly as sent, whichever name the endpoint uses', async () => {
    const provider = await registerProvider(market)
    for (const endpoint of [market.endpoint, market.endpoint.replace('127.0.0.1', 'localhost')]) {
      const api = new ProviderApi(new ApiClient({endpoint, key: provider.agent, retry: FAST}), provider.pk)
      const answer = await api.heartbeat({version: 'test', provisioner_type: 'local', capabilities: [], active_contracts: 0})
      // The devnet asked for 1 s (the agent keeps its own interval for a value outside 10-3600).
      expect(answer).toEqual({acknowledged: true, next_heartbeat_seconds: 1, agents: []})
    }
  })
})
