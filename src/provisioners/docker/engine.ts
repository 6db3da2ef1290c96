import {request} from 'node:http'
import {z} from 'zod'

import {ProvisionAbortedError} from '../provisioner.js'

/** A failed Engine API call: the HTTP status and the engine's `message` when it answered. */
export class DockerApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    options: {cause?: unknown} = {},
  ) {
    super(message, options)
    this.name = 'DockerApiError'
  }

  /** No answer, or a 5xx: another attempt may succeed. A 4xx is about the request itself. */
  get retryable(): boolean {
    return this.status === undefined || this.status >= 500
  }
}

/** Every error answer of the engine: `{"message": "..."}`. */
const ErrorBody = z.looseObject({message: z.string()})

export interface EngineAnswer {
  status: number
  body: Buffer
}

export interface EngineCall {
  method: 'GET' | 'POST' | 'DELETE'
  path: string
  query?: Record<string, string | number | boolean>
  body?: unknown
  /** Statuses that are answers, not errors (e.g. 404 when looking something up, 304 "already started"). */
  accept?: readonly number[]
}

/**
 * The Docker Engine API over its unix socket with plain node:http. The API version is the engine's own, read once
 * from /_ping, so the client speaks what the engine speaks (old engines reject newer versions, new ones drop old).
 */
export class DockerEngine {
  private version: Promise<string> | undefined

  constructor(
    readonly socketPath: string,
    private readonly requestTimeoutMs: number,
  ) {}

  /** Calls the API and parses a JSON answer with `schema`; accepted non-2xx statuses come back as `undefined`. */
  async json<S extends z.ZodType>(what: string, schema: S, call: EngineCall, signal?: AbortSignal): Promise<z.infer<S> | undefined> {
    const answer = await this.call(what, call, signal)
    if (answer.status < 200 || answer.status >= 300) return undefined
    let parsed: unknown
    try {
      parsed = JSON.parse(answer.body.toString('utf8'))
    } catch (error) {
      throw new DockerApiError(`${what}: the engine answered something that is not JSON`, answer.status, {cause: error})
    }
    const result = schema.safeParse(parsed)
    if (!result.success) {
      const issue = result.error.issues[0]
      const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'answer'
      throw new DockerApiError(`${what}: unexpected answer from the engine (${where}: ${issue?.message ?? 'invalid'})`, answer.status)
    }
    return result.data
  }

  /** Calls the API; a status outside 2xx and `accept` becomes a DockerApiError carrying the engine's message. */
  async call(what: string, call: EngineCall, signal?: AbortSignal): Promise<EngineAnswer> {
    if (signal?.aborted) throw new ProvisionAbortedError(what, {cause: signal.reason})
    const version = await this.apiVersion(signal)
    const answer = await this.send(what, {...call, path: `/v${version}${call.path}`}, signal)
    if ((answer.status >= 200 && answer.status < 300) || call.accept?.includes(answer.status)) return answer
    const parsed = ErrorBody.safeParse(safeJson(answer.body))
    const message = parsed.success ? parsed.data.message : answer.body.toString('utf8').trim().slice(0, 200)
    throw new DockerApiError(`${what}: the engine answered ${answer.status}: ${message}`, answer.status)
  }

  private apiVersion(signal?: AbortSignal): Promise<string> {
    this.version ??= this.send('reaching the Docker engine', {method: 'GET', path: '/_ping'}, signal).then((answer) => {
      if (answer.status !== 200 || !answer.apiVersion) throw new DockerApiError(`the engine at ${this.socketPath} answered /_ping with ${answer.status}`, answer.status)
      return answer.apiVersion
    })
    // A failed ping is not remembered: the engine may come up later.
    this.version.catch(() => (this.version = undefined))
    return this.version
  }

  private send(what: string, call: EngineCall, signal?: AbortSignal): Promise<EngineAnswer & {apiVersion?: string}> {
    const query = call.query ? '?' + new URLSearchParams(Object.entries(call.query).map(([key, value]): [string, string] => [key, String(value)])).toString() : ''
    const payload = call.body === undefined ? undefined : Buffer.from(JSON.stringify(call.body), 'utf8')
    return new Promise((resolve, reject) => {
      const outgoing = request(
        {
          socketPath: this.socketPath,
          method: call.method,
          path: call.path + query,
          headers: {Host: 'docker', ...(payload ? {'Content-Type': 'application/json', 'Content-Length': payload.length} : {})},
          timeout: this.requestTimeoutMs,
          signal,
        },
        (incoming) => {
          const chunks: Buffer[] = []
          incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
          incoming.on('error', (error) => reject(new DockerApiError(`${what}: ${error.message}`, undefined, {cause: error})))
          incoming.on('end', () => {
            const version = incoming.headers['api-version']
            resolve({status: incoming.statusCode ?? 0, body: Buffer.concat(chunks), apiVersion: typeof version === 'string' ? version : undefined})
          })
        },
      )
      outgoing.on('timeout', () => outgoing.destroy(new Error(`no answer within ${this.requestTimeoutMs / 1000} s`)))
      outgoing.on('error', (error) => {
        if (signal?.aborted) reject(new ProvisionAbortedError(what, {cause: signal.reason}))
        else reject(new DockerApiError(`${what}: cannot reach the Docker engine at ${this.socketPath}: ${error.message}`, undefined, {cause: error}))
      })
      outgoing.end(payload)
    })
  }
}

function safeJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
}

/**
 * The engine's log stream of a container without a TTY: frames of an 8-byte header (stream type, 3 zero bytes,
 * big-endian length) and the payload. Returns the text of stdout and stderr in order.
 */
export function demultiplexLogs(stream: Buffer): string {
  let text = ''
  let offset = 0
  while (offset + 8 <= stream.length) {
    const length = stream.readUInt32BE(offset + 4)
    text += stream.subarray(offset + 8, offset + 8 + length).toString('utf8')
    offset += 8 + length
  }
  return text
}
