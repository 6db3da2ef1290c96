import {AsyncLocalStorage} from 'node:async_hooks'
import type {TLSSocket} from 'node:tls'
import type {Proxmox} from 'proxmox-api'
import type {Dispatcher} from 'undici'
import {z} from 'zod'

import {ExitCode, UserError} from '../../core/errors.js'
import {ProvisionAbortedError} from '../provisioner.js'

export interface ProxmoxConnectionOptions {
  host: string
  port: number
  /** USER@REALM!TOKENID */
  tokenId: string
  /** The token's secret, a lowercase UUID. */
  tokenSecret: string
  /** SHA-256 of a self-signed host certificate; the connection is refused before any request when it differs. */
  tlsFingerprint?: string
  requestTimeoutMs: number
}

const TOKEN_ID = /^[^\s@!]+@[^\s@!]+![A-Za-z][A-Za-z0-9._-]*$/
const TOKEN_SECRET = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Checked before the package sees them: it would print to the console and throw a bare Error. */
export function validateToken(tokenId: string, tokenSecret: string): void {
  if (!TOKEN_ID.test(tokenId)) {
    throw new UserError(`Proxmox token id "${tokenId}" is not USER@REALM!TOKENID`, {
      code: 'proxmox_token_invalid',
      suggestion: 'set [provisioner.proxmox] token_id to the full token id, like outpost@pve!agent',
      exit: ExitCode.config,
    })
  }
  if (!TOKEN_SECRET.test(tokenSecret)) {
    throw new UserError('Proxmox token secret is not a lowercase UUID', {
      code: 'proxmox_token_invalid',
      suggestion: 'set token_secret (or OUTPOST_PROVISIONER_PROXMOX_TOKEN_SECRET) to the secret shown when the token was made',
      exit: ExitCode.config,
    })
  }
}

/** `AB:CD:...` or plain hex, in the one form Node reports (`fingerprint256`: upper case with colons). */
export function normalizeFingerprint(fingerprint: string): string {
  const hex = fingerprint.replaceAll(':', '').toUpperCase()
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new UserError(`"${fingerprint}" is not a SHA-256 fingerprint`, {code: 'config_invalid', exit: ExitCode.config})
  return hex.match(/../g)?.join(':') ?? hex
}

export class TlsFingerprintMismatchError extends Error {
  /** A different certificate stays different until the operator looks. */
  readonly retryable = false

  constructor(readonly expected: string, readonly actual: string) {
    super(`the Proxmox host presented a certificate with SHA-256 fingerprint ${actual}, not the pinned ${expected}`)
    this.name = 'TlsFingerprintMismatchError'
  }
}

export type ProxmoxFailureKind = 'http' | 'network' | 'tls' | 'protocol'

/** A failed API call: the HTTP status and Proxmox's reason text when the host answered. */
export class ProxmoxApiError extends Error {
  constructor(
    message: string,
    readonly kind: ProxmoxFailureKind,
    readonly status?: number,
    readonly reason?: string,
    options: {cause?: unknown} = {},
  ) {
    super(message, options)
    this.name = 'ProxmoxApiError'
  }

  /** 5xx, 596 (a node unreachable inside the cluster) and network errors may pass; a 4xx won't. */
  get retryable(): boolean {
    return this.kind === 'network' || (this.kind === 'http' && this.status !== undefined && this.status >= 500)
  }
}

// proxmox-api reports failures as text only: `<METHOD> <url> return Error <status> <reason>: {"data":...}`.
const RETURNED_ERROR = /return Error (\d{3}) (.*?): \{"data"/s
const OTHER_STATUS = /connection failed with (\d{3}) (.*?) return: /s

function causes(error: unknown): unknown[] {
  const chain: unknown[] = []
  for (let current = error; current !== undefined && chain.length < 10; current = current instanceof Error ? current.cause : undefined) {
    chain.push(current)
  }
  return chain
}

function classify(error: unknown, what: string): ProxmoxApiError | ProvisionAbortedError | TlsFingerprintMismatchError {
  const chain = causes(error)
  const mismatch = chain.find((item) => item instanceof TlsFingerprintMismatchError)
  if (mismatch instanceof TlsFingerprintMismatchError) return mismatch
  const text = error instanceof Error ? error.message : String(error)
  const returned = RETURNED_ERROR.exec(text) ?? OTHER_STATUS.exec(text)
  if (returned) {
    const status = Number(returned[1])
    const reason = (returned[2] ?? '').trim()
    return new ProxmoxApiError(`${what}: Proxmox answered ${status} ${reason}`, 'http', status, reason, {cause: error})
  }
  if (/^FaILED to call/.test(text)) {
    const deepest = chain.at(-1)
    const detail = deepest instanceof Error ? deepest.message : text
    const tls = chain.some((item) => item instanceof Error && 'code' in item && /CERT|SSL|TLS|SELF_SIGNED/.test(String(item.code)))
    return new ProxmoxApiError(`${what}: ${tls ? 'TLS' : 'network'} error: ${detail}`, tls ? 'tls' : 'network', undefined, undefined, {cause: error})
  }
  return new ProxmoxApiError(`${what}: ${text}`, 'protocol', undefined, undefined, {cause: error})
}

/**
 * A task id, read as pve-common's PVE::UPID::decode reads it (src/PVE/UPID.pm): `UPID:node:pid:pstart:starttime:type:
 * id:user:`, hex in either case. pstart, the worker's start in clock ticks since boot, takes a ninth digit once the
 * host has been up 2^32 ticks (about 497 days); PVE allows it, so must we.
 */
export const UPID = z
  .string()
  .regex(/^UPID:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8}:[^:\s/]+:[^:\s/]*:[^:\s/]+:$/, 'expected a task UPID')

/** The node a task runs on, from its UPID (`UPID:<node>:...`): its status is read there. */
export function upidNode(upid: string): string {
  return upid.split(':')[1] ?? ''
}

/**
 * proxmox-api over a fetch that pins the host certificate and carries the caller's AbortSignal. The package and
 * undici are imported on first use, so commands that never talk to Proxmox don't load them.
 */
export class ProxmoxConnection {
  private api: Promise<Proxmox.Api> | undefined
  private dispatcher: Dispatcher | undefined
  /** The signal of the call in progress, read by the fetch below (the package's own calls can't take one). */
  private readonly signals = new AsyncLocalStorage<AbortSignal | undefined>()
  private readonly pinned: string | undefined

  constructor(private readonly options: ProxmoxConnectionOptions) {
    validateToken(options.tokenId, options.tokenSecret)
    this.pinned = options.tlsFingerprint ? normalizeFingerprint(options.tlsFingerprint) : undefined
  }

  get endpoint(): string {
    return `https://${this.options.host}:${this.options.port}`
  }

  /** Runs one API call and parses its answer; every failure comes back as a ProxmoxApiError (or an abort). */
  async call<S extends z.ZodType>(what: string, schema: S, request: (api: Proxmox.Api) => Promise<unknown>, signal?: AbortSignal): Promise<z.infer<S>> {
    if (signal?.aborted) throw new ProvisionAbortedError(what, {cause: signal.reason})
    const api = await this.connect()
    let answer: unknown
    try {
      answer = await this.signals.run(signal, () => request(api))
    } catch (error) {
      if (signal?.aborted) throw new ProvisionAbortedError(what, {cause: error})
      throw classify(error, what)
    }
    const parsed = schema.safeParse(answer)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'answer'
      throw new ProxmoxApiError(`${what}: unexpected answer from Proxmox (${where}: ${issue?.message ?? 'invalid'})`, 'protocol')
    }
    return parsed.data
  }

  async close(): Promise<void> {
    const dispatcher = this.dispatcher
    this.dispatcher = undefined
    this.api = undefined
    await dispatcher?.close()
  }

  private connect(): Promise<Proxmox.Api> {
    this.api ??= this.build()
    return this.api
  }

  private async build(): Promise<Proxmox.Api> {
    const [{proxmoxApi}, undici] = await Promise.all([import('proxmox-api'), import('undici')])
    const pinned = this.pinned
    // With a pinned fingerprint the certificate is trusted by that fingerprint alone (a self-signed host has no CA to
    // check); the check runs when the TLS handshake ends, before a byte of the request (and its token) is written.
    // No TLS session resumption: a resumed session shows no peer certificate to check.
    const base = undici.buildConnector({rejectUnauthorized: pinned === undefined, timeout: this.options.requestTimeoutMs, maxCachedSessions: 0})
    const connect: typeof base = (connectOptions, callback) => {
      base(connectOptions, (error, socket) => {
        if (error || !socket) {
          callback(error ?? new Error('connection failed'), null)
          return
        }
        if (pinned) {
          const actual = (socket as TLSSocket).getPeerCertificate().fingerprint256 ?? '(none)'
          if (actual !== pinned) {
            socket.destroy()
            callback(new TlsFingerprintMismatchError(pinned, actual), null)
            return
          }
        }
        callback(null, socket)
      })
    }
    const dispatcher = new undici.Agent({connect, connectTimeout: this.options.requestTimeoutMs})
    this.dispatcher = dispatcher
    const signals = this.signals
    return proxmoxApi({
      host: this.options.host,
      // The package has no default port and would use 443 without this.
      port: this.options.port,
      schema: 'https',
      tokenID: this.options.tokenId,
      tokenSecret: this.options.tokenSecret,
      queryTimeout: this.options.requestTimeoutMs,
      fetch: (url, init) => {
        const callerSignal = signals.getStore()
        const signal = callerSignal && init?.signal ? AbortSignal.any([init.signal, callerSignal]) : (callerSignal ?? init?.signal)
        return undici.fetch(url, {...init, signal, dispatcher})
      },
    })
  }
}
