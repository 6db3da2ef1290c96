import {Agent as HttpAgent, request as httpRequest, type IncomingMessage} from 'node:http'
import {Agent as HttpsAgent, request as httpsRequest} from 'node:https'

/**
 * One HTTP request and its answer, on node:http with kept-alive connections. The marketplace client's transport:
 * an agent sends a dozen signed requests per contract, and fetch (undici's Request, Response and web streams) costs
 * several times the CPU per request that node:http does.
 */

export interface Exchange {
  method: string
  /** Sent as given; without a `host`, node:http derives it from the URL. */
  headers: Record<string, string>
  body?: string | Uint8Array
  signal: AbortSignal
  /** The most body bytes read: a larger answer is not read (`body` undefined). */
  limit: number
}

export interface Answer {
  status: number
  headers: Headers
  /** undefined: larger than the limit, not read. */
  body: Buffer | undefined
}

/** No answer came: the connection failed, or was closed or aborted before a status line. */
export class NoAnswerError extends Error {
  override readonly name = 'NoAnswerError'
}

/** An answer began and its body was cut off (the connection closed or was aborted while it was read). */
export class CutOffError extends Error {
  override readonly name = 'CutOffError'
  constructor(
    readonly status: number,
    options: {cause?: unknown},
  ) {
    super(`the answer (${status}) was cut off`, options)
  }
}

const agents = {
  'http:': new HttpAgent({keepAlive: true}),
  'https:': new HttpsAgent({keepAlive: true}),
}

function headersOf(response: IncomingMessage): Headers {
  const headers = new Headers()
  const raw = response.rawHeaders
  for (let index = 0; index + 1 < raw.length; index += 2) {
    try {
      headers.append(raw[index]!, raw[index + 1]!)
    } catch {
      // A header name or value fetch would refuse is not one the client reads.
    }
  }
  return headers
}

export function exchange(url: URL, request: Exchange): Promise<Answer> {
  const secure = url.protocol === 'https:'
  const send = secure ? httpsRequest : httpRequest
  return new Promise<Answer>((resolve, reject) => {
    let settled = false
    /** Set once the status line is in: an error after it cuts the answer off, one before it means no answer. */
    let answered: number | undefined
    const fail = (error: Error) => {
      if (settled) return
      settled = true
      reject(error)
    }
    const outgoing = send(
      {
        protocol: url.protocol,
        // node:http wants an IPv6 literal without its brackets.
        hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: url.port || (secure ? 443 : 80),
        path: url.pathname + url.search,
        method: request.method,
        headers: request.headers,
        agent: agents[secure ? 'https:' : 'http:'],
        signal: request.signal,
      },
      (response) => {
        const status = response.statusCode ?? 0
        answered = status
        const headers = headersOf(response)
        const declared = Number(response.headers['content-length'] ?? Number.NaN)
        const tooLarge = () => {
          settled = true
          response.destroy()
          resolve({status, headers, body: undefined})
        }
        if (Number.isFinite(declared) && declared > request.limit) return tooLarge()
        const chunks: Buffer[] = []
        let size = 0
        response.on('data', (chunk: Buffer) => {
          if (settled) return
          size += chunk.length
          if (size > request.limit) return tooLarge()
          chunks.push(chunk)
        })
        response.once('end', () => {
          if (settled) return
          settled = true
          resolve({status, headers, body: Buffer.concat(chunks, size)})
        })
        response.once('error', (error) => fail(new CutOffError(status, {cause: error})))
        // A body that stops short closes the socket without 'end' (the answer's length was promised, or chunked).
        response.once('close', () => {
          if (!response.complete) fail(new CutOffError(status, {}))
        })
      },
    )
    outgoing.on('error', (error) => fail(answered === undefined ? new NoAnswerError(error.message, {cause: error}) : new CutOffError(answered, {cause: error})))
    outgoing.end(request.body)
  })
}
