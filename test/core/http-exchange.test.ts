import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {CutOffError, exchange, NoAnswerError} from '../../src/core/api/http-exchange.js'

describe('exchange: one request on node:http', () => {
  const ports: number[] = []
  let server: Server
  let base = ''
  const routes: Record<string, (request: IncomingMessage, response: ServerResponse) => void> = {
    '/echo': (request, response) => {
      let body = ''
      request.on('data', (chunk: Buffer) => (body += chunk.toString()))
      request.on('end', () => response.writeHead(200, {'content-type': 'application/json', 'x-seen-host': request.headers.host ?? ''}).end(JSON.stringify({method: request.method, body})))
    },
    '/declared-large': (_request, response) => response.writeHead(200, {'content-length': '5000'}).end('x'.repeat(5000)),
    '/chunked-large': (_request, response) => {
      response.writeHead(200)
      for (let index = 0; index < 50; index++) response.write('y'.repeat(100))
      response.end()
    },
    '/cut': (_request, response) => {
      response.writeHead(200, {'content-length': '100'})
      response.write('{"partial":')
      setTimeout(() => response.socket?.destroy(), 20)
    },
    '/silent': () => undefined,
  }

  beforeAll(async () => {
    server = createServer((request, response) => {
      ports.push(request.socket.remotePort ?? 0)
      const route = routes[request.url ?? '']
      if (route) route(request, response)
      else response.writeHead(404).end()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => {
    server.closeAllConnections()
    server.close()
  })

  const send = (path: string, options: {limit?: number; signal?: AbortSignal; timeoutMs?: number; body?: string; method?: string; discardBody?: boolean} = {}) =>
    exchange(new URL(base + path), {
      method: options.method ?? 'GET',
      headers: {accept: 'application/json'},
      ...(options.body === undefined ? {} : {body: options.body}),
      ...(options.signal ? {signal: options.signal} : {}),
      timeoutMs: options.timeoutMs ?? 5000,
      limit: options.limit ?? 1000,
      ...(options.discardBody ? {discardBody: true} : {}),
    })

  it('sends the body and the Host, reads status, headers and body, and keeps the connection for the next request', async () => {
    const first = await send('/echo', {method: 'PUT', body: '{"a":1}'})
    expect(first.status).toBe(200)
    expect(first.headers.get('content-type')).toBe('application/json')
    expect(first.headers.get('x-seen-host')).toBe(new URL(base).host)
    expect(JSON.parse(first.body!.toString())).toEqual({method: 'PUT', body: '{"a":1}'})
    await send('/echo')
    expect(ports.at(-1)).toBe(ports.at(-2))
  })

  it('does not read an answer larger than the limit, whether its length is declared or not', async () => {
    expect((await send('/declared-large')).body).toBeUndefined()
    expect((await send('/chunked-large', {limit: 1000})).body).toBeUndefined()
    expect((await send('/chunked-large', {limit: 5000})).body?.length).toBe(5000)
  })

  it('with discardBody, counts the body read and keeps none of it; the limit and a cut-off body are as without', async () => {
    const dropped = await send('/chunked-large', {limit: 5000, discardBody: true})
    expect(dropped).toMatchObject({status: 200, size: 5000})
    expect(dropped.body?.length).toBe(0)
    expect((await send('/chunked-large', {limit: 1000, discardBody: true})).body).toBeUndefined()
    expect(await send('/cut', {discardBody: true}).catch((error: unknown) => error)).toBeInstanceOf(CutOffError)
  })

  it('an answer whose body stops short is cut off, with its status; no answer at all is told apart', async () => {
    const cut = await send('/cut').catch((error: unknown) => error)
    expect(cut).toBeInstanceOf(CutOffError)
    expect(cut).toMatchObject({status: 200})
    const silent = await send('/silent', {timeoutMs: 200}).catch((error: unknown) => error)
    expect(silent).toBeInstanceOf(NoAnswerError)
    expect(silent).toMatchObject({timedOut: true})
    const stopped = new AbortController()
    const aborted = send('/silent', {signal: stopped.signal}).catch((error: unknown) => error)
    stopped.abort(new Error('shutting down'))
    expect(await aborted).toMatchObject({name: 'NoAnswerError', timedOut: false})
    const already = await send('/echo', {signal: AbortSignal.abort()}).catch((error: unknown) => error)
    expect(already).toMatchObject({name: 'NoAnswerError', timedOut: false})
    const closed = createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as AddressInfo).port
    closed.close()
    const refused = await exchange(new URL(`http://127.0.0.1:${port}/`), {method: 'GET', headers: {}, timeoutMs: 5000, limit: 10}).catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(NoAnswerError)
  })
})

describe('exchange on a kept-alive connection the server closed as idle', () => {
  it('sends the request once more, identical, on a new connection; a connection that fails fresh is not retried', async () => {
    const seen: {socket: number; nonce: string | undefined}[] = []
    const sockets = new Map<object, number>()
    // Each connection serves its first request only, as a server whose keep-alive timeout meets the client's reuse.
    const server = createServer((request, response) => {
      const socket = sockets.get(request.socket) ?? sockets.set(request.socket, sockets.size).size - 1
      seen.push({socket, nonce: request.headers['x-outpost-nonce'] as string | undefined})
      if (seen.filter((entry) => entry.socket === socket).length > 1) return void request.socket.destroy()
      response.writeHead(200, {'content-type': 'application/json'}).end('{"ok":true}')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)
    const send = (nonce: string) => exchange(url, {method: 'POST', headers: {'x-outpost-nonce': nonce}, body: '{}', timeoutMs: 5000, limit: 100})
    try {
      expect((await send('a')).status).toBe(200)
      const again = await send('b')
      expect(again.status).toBe(200)
      // The second request reached the reused connection, then a new one, with the same nonce both times.
      expect(seen.slice(1)).toEqual([{socket: 0, nonce: 'b'}, {socket: 1, nonce: 'b'}])
    } finally {
      server.closeAllConnections()
      server.close()
    }
    const refused = await send('c').catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(NoAnswerError)
  })
})
