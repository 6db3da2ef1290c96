import {createServer, request as forward, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'

/**
 * An HTTP proxy between an agent and a marketplace that breaks chosen exchanges the way networks and gateways do:
 *
 * - `drop`: the connection is cut with no answer;
 * - `stall`: nothing is answered for `stallMs` (longer than the client's timeout), then the connection is cut;
 * - `5xx`: a gateway's `502`/`503` with a JSON-less body;
 * - `html`: an HTML error page (a captive portal, a load balancer's page) with `status` (default 502);
 * - `truncate`: the marketplace's own 2xx status and headers, and half of its body, then the connection is cut.
 *
 * `phase: 'request'` breaks the exchange before the marketplace sees it; `phase: 'response'` (the default for
 * `drop`, `stall`, `5xx` and `html`: see `phase`) after it has acted on it, so the request took effect and only the
 * answer is lost. `truncate` is always a response fault. A rule fires with probability `rate` (default 1), at most
 * `count` times (default: no limit), on requests whose method is `method` (default any), whose path under `/api/v1`
 * matches `path`, and whose body matches `body` when given. The random source is seeded, so a failing run can be
 * repeated with the seed it prints.
 */

export type FaultKind = 'drop' | 'stall' | '5xx' | 'html' | 'truncate'

export interface FaultRule {
  name?: string
  fault: FaultKind
  method?: string
  path: RegExp
  body?: RegExp
  rate?: number
  count?: number
  /** Before the marketplace sees the request, or after it answered (default). */
  phase?: 'request' | 'response'
  /** For `stall`. */
  stallMs?: number
  /** For `5xx` and `html`. */
  status?: number
}

export interface FaultProxy {
  endpoint: string
  /** How often each rule fired, by rule name (or `<fault> <method> <path>`). */
  fired: Record<string, number>
  /** Requests seen, and how many of them a rule broke. */
  totals: {requests: number; broken: number}
  seed: number
  /** Replaces the rules (e.g. to end the faults and let the agent settle). */
  setRules(rules: FaultRule[]): void
  close(): Promise<void>
}

const HTML_PAGE = '<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1><p>nginx</p></body></html>\n'

/** mulberry32: small, seeded, good enough to pick which requests break. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let value = state
    value = Math.imul(value ^ (value >>> 15), value | 1)
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61)
    return ((value ^ (value >>> 14)) >>> 0) / 4_294_967_296
  }
}

function ruleName(rule: FaultRule): string {
  return rule.name ?? `${rule.fault} ${rule.method ?? '*'} ${rule.path.source}`
}

export async function startFaultProxy(target: string, rules: FaultRule[], options: {seed?: number} = {}): Promise<FaultProxy> {
  const upstream = new URL(target)
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
  const random = seededRandom(seed)
  let active = rules
  const fired: Record<string, number> = {}
  const totals = {requests: 0, broken: 0}
  const sockets = new Set<Socket>()

  const pick = (method: string, path: string, body: string): FaultRule | undefined => {
    for (const rule of active) {
      if (rule.method && rule.method !== method) continue
      if (!rule.path.test(path)) continue
      if (rule.body && !rule.body.test(body)) continue
      const name = ruleName(rule)
      if (rule.count !== undefined && (fired[name] ?? 0) >= rule.count) continue
      if (random() >= (rule.rate ?? 1)) continue
      fired[name] = (fired[name] ?? 0) + 1
      totals.broken++
      return rule
    }
    return undefined
  }

  const breakExchange = (rule: FaultRule, response: ServerResponse) => {
    switch (rule.fault) {
      case 'drop':
        response.socket?.destroy()
        return
      case 'stall': {
        const timer = setTimeout(() => response.socket?.destroy(), rule.stallMs ?? 60_000)
        response.socket?.once('close', () => clearTimeout(timer))
        return
      }
      case '5xx':
        response.writeHead(rule.status ?? 502, {'content-type': 'text/plain'}).end('upstream unavailable\n')
        return
      case 'html':
        response.writeHead(rule.status ?? 502, {'content-type': 'text/html'}).end(HTML_PAGE)
        return
      case 'truncate':
        // Only a response can be truncated; the caller handles it after the marketplace answered.
        response.socket?.destroy()
        return
    }
  }

  const server: Server = createServer((incoming: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = []
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
    incoming.on('end', () => {
      totals.requests++
      const body = Buffer.concat(chunks)
      const method = incoming.method ?? 'GET'
      const url = incoming.url ?? '/'
      const path = url.split('?')[0]?.replace(/^\/api\/v1/, '') ?? '/'
      const rule = pick(method, path, body.toString('utf8'))
      const phase = rule?.fault === 'truncate' ? 'response' : (rule?.phase ?? 'response')
      if (rule && phase === 'request') return breakExchange(rule, response)
      // The Host header is forwarded as the client sent it: it is part of what the client signed (§2).
      const outgoing = forward(
        {host: upstream.hostname, port: upstream.port, method, path: url, headers: incoming.headers},
        (answer) => {
          const answerChunks: Buffer[] = []
          answer.on('data', (chunk: Buffer) => answerChunks.push(chunk))
          answer.on('end', () => {
            const answerBody = Buffer.concat(answerChunks)
            if (!rule) {
              response.writeHead(answer.statusCode ?? 502, answer.headers).end(answerBody)
              return
            }
            if (rule.fault !== 'truncate') return breakExchange(rule, response)
            const {'transfer-encoding': _chunked, ...rest} = answer.headers
            // The full length is announced and half of it sent: the client sees a 2xx it can't read to the end.
            const headers = {...rest, 'content-length': String(answerBody.length)}
            response.writeHead(answer.statusCode ?? 200, headers)
            response.write(answerBody.subarray(0, Math.floor(answerBody.length / 2)), () => response.socket?.destroy())
          })
          answer.on('error', () => response.socket?.destroy())
        },
      )
      outgoing.on('error', () => response.socket?.destroy())
      outgoing.end(body)
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    fired,
    totals,
    seed,
    setRules: (next) => {
      active = next
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
