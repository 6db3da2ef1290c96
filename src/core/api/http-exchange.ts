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
  /** The caller's end of the request (a shutdown). */
  signal?: AbortSignal
  /** The whole exchange's limit, from the request to the answer's last byte. */
  timeoutMs: number
  /** The most body bytes read: a larger answer is not read (`body` undefined). */
  limit: number
  /**
   * Count the body's bytes and drop them (`body` empty, `size` its length): a bulk download timed as the link carries
   * it, as `curl -o /dev/null` does, not as fast as this process can take fresh memory for it.
   */
  discardBody?: boolean
}

/** An answer's headers, looked up by name in any case; several of one name are joined with ", " (as fetch does). */
export class AnswerHeaders {
  constructor(private readonly headers: IncomingMessage['headers']) {}

  get(name: string): string | null {
    const value = this.headers[name.toLowerCase()]
    if (value === undefined) return null
    return Array.isArray(value) ? value.join(', ') : value
  }
}

export interface Answer {
  status: number
  headers: AnswerHeaders
  /** undefined: larger than the limit, not read. */
  body: Buffer | undefined
  /** The body's length as read (also when it was dropped). */
  size: number
  /** The answer to the request sent once more after a reset (see exchange): the first copy may have reached the server. */
  resent: boolean
}

/** No answer came: the connection failed, or was closed, aborted or timed out before a status line. */
export class NoAnswerError extends Error {
  override readonly name = 'NoAnswerError'
  constructor(
    message: string,
    readonly timedOut: boolean,
    options: {cause?: unknown},
  ) {
    super(message, options)
  }
}

/** An answer began and its body was cut off (the connection closed, or was aborted or timed out while it was read). */
export class CutOffError extends Error {
  override readonly name = 'CutOffError'
  constructor(
    readonly status: number,
    readonly timedOut: boolean,
    options: {cause?: unknown},
  ) {
    super(`the answer (${status}) was cut off`, options)
  }
}

const agents = {
  'http:': new HttpAgent({keepAlive: true}),
  'https:': new HttpsAgent({keepAlive: true}),
}

/** The kept-alive connection this request was written to was reset before any answer: the server had closed it as idle. */
class ClosedWhileIdleError extends NoAnswerError {}

/**
 * One request; written to a kept-alive connection the server had just closed as idle (its keep-alive timeout met
 * our reuse), it is sent once more, identical, on a new connection. Identical is safe even for a POST: a signed
 * request carries its nonce, so one the server did take is refused as a replay, never done twice (and the caller
 * reads that refusal as an unknown outcome, `resent`: a connection cut after the request went through looks alike).
 */
export async function exchange(url: URL, request: Exchange): Promise<Answer> {
  try {
    return await attempt(url, request, true)
  } catch (error) {
    if (!(error instanceof ClosedWhileIdleError)) throw error
    return {...(await attempt(url, request, false)), resent: true}
  }
}

function attempt(url: URL, request: Exchange, pooled: boolean): Promise<Answer> {
  const secure = url.protocol === 'https:'
  const send = secure ? httpsRequest : httpRequest
  return new Promise<Answer>((resolve, reject) => {
    let settled = false
    let timedOut = false
    /** Set once the status line is in: an error after it cuts the answer off, one before it means no answer. */
    let answered: number | undefined
    const abort = () => outgoing.destroy(request.signal?.reason instanceof Error ? request.signal.reason : new Error('aborted'))
    const finish = () => {
      settled = true
      clearTimeout(timer)
      request.signal?.removeEventListener('abort', abort)
    }
    const fail = (error: Error) => {
      if (settled) return
      finish()
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
        agent: pooled ? agents[secure ? 'https:' : 'http:'] : false,
      },
      (response) => {
        const status = response.statusCode ?? 0
        answered = status
        const headers = new AnswerHeaders(response.headers)
        const declared = Number(response.headers['content-length'] ?? Number.NaN)
        const tooLarge = () => {
          finish()
          response.destroy()
          resolve({status, headers, body: undefined, size: 0, resent: false})
        }
        if (Number.isFinite(declared) && declared > request.limit) return tooLarge()
        const chunks: Buffer[] = []
        let size = 0
        response.on('data', (chunk: Buffer) => {
          if (settled) return
          size += chunk.length
          if (size > request.limit) return tooLarge()
          if (!request.discardBody) chunks.push(chunk)
        })
        response.once('end', () => {
          if (settled) return
          finish()
          resolve({status, headers, body: Buffer.concat(chunks), size, resent: false})
        })
        response.once('error', (error) => fail(new CutOffError(status, timedOut, {cause: error})))
        // A body that stops short closes the socket without 'end' (the answer's length was promised, or chunked).
        response.once('close', () => {
          if (!response.complete) fail(new CutOffError(status, timedOut, {}))
        })
      },
    )
    outgoing.on('error', (error) => {
      if (answered !== undefined) return fail(new CutOffError(answered, timedOut, {cause: error}))
      const code = (error as NodeJS.ErrnoException).code
      const closedWhileIdle = outgoing.reusedSocket && !timedOut && !request.signal?.aborted && (code === 'ECONNRESET' || code === 'EPIPE')
      fail(new (closedWhileIdle ? ClosedWhileIdleError : NoAnswerError)(error.message, timedOut, {cause: error}))
    })
    // One timer and one listener: cheaper per request than AbortSignal.timeout composed with AbortSignal.any.
    const timer = setTimeout(() => {
      timedOut = true
      outgoing.destroy(new Error(`no complete answer within ${request.timeoutMs} ms`))
    }, request.timeoutMs)
    timer.unref()
    if (request.signal?.aborted) abort()
    else request.signal?.addEventListener('abort', abort, {once: true})
    outgoing.end(request.body)
  })
}
