import type {IncomingHttpHeaders} from 'node:http'

import {delegationMessage, type AgentPermission} from '../core/delegation.js'
import {isHex} from '../core/hex.js'
import {REQUEST_SIGNING_VERSION, requestSigningMessage, SIGNATURE_HEADERS, verifyHex} from '../core/signing.js'
import type {Db} from './database.js'
import {HttpError, unauthenticated} from './http-error.js'

/** PROTOCOL §2: how far a request's timestamp may be from the server's clock, and how long a nonce is remembered. */
export const TIMESTAMP_WINDOW_MS = 300_000
export const NONCE_RETENTION_MS = 600_000

const forbidden = (code: string, message: string) => new HttpError(403, code, message)

function header(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name]
  if (typeof value !== 'string' || value.length === 0) throw unauthenticated('bad_signature', `missing header ${name}`)
  return value
}

/** A request whose §2 signature verified: who signed it, and the signed parts the marketplace may keep (§6). */
export interface VerifiedRequest {
  signer: string
  timestamp: number
  nonce: string
  signature: string
  /** The Host header as received, lower case: the host line of the signed message. */
  host: string
}

/**
 * PROTOCOL §6: a signed request as the marketplace keeps it, exactly as received: the Host it was sent to, the §2
 * headers and the body bytes. A contract carries its renter's `POST /contracts` (or `POST /orders`) this way, so
 * the agent can check who asked for what before it seals credentials to that key.
 */
export interface SignedRequestRecord {
  host: string
  timestamp: number
  nonce: string
  body_b64: string
  signature: string
}

export function signedRequestRecord(verified: VerifiedRequest, body: Buffer): SignedRequestRecord {
  return {host: verified.host, timestamp: verified.timestamp, nonce: verified.nonce, body_b64: body.toString('base64'), signature: verified.signature}
}

/**
 * Checks the §2 (v2) signature of a request and returns what was signed. Throws 401 for a missing or malformed
 * header, a timestamp outside the window, or a signature that does not verify, which includes a request signed for
 * another host (a replay from another marketplace) and a v1 signature. The nonce is checked separately
 * (NonceStore), after the signature, so nobody can burn another key's nonces with forged requests.
 */
export function verifyRequestSignature(
  request: {headers: IncomingHttpHeaders; method: string; pathAndQuery: string; body: Buffer},
  now: number,
): VerifiedRequest {
  const signer = header(request.headers, SIGNATURE_HEADERS.key)
  const timestampText = header(request.headers, SIGNATURE_HEADERS.timestamp)
  const nonce = header(request.headers, SIGNATURE_HEADERS.nonce)
  const signature = header(request.headers, SIGNATURE_HEADERS.signature)
  const host = header(request.headers, 'host').toLowerCase()
  if (!isHex(signer, 32)) throw unauthenticated('bad_signature', `${SIGNATURE_HEADERS.key}: expected 64 lowercase hex characters`)
  if (!isHex(nonce, 16)) throw unauthenticated('bad_signature', `${SIGNATURE_HEADERS.nonce}: expected 32 lowercase hex characters`)
  if (!isHex(signature, 64)) throw unauthenticated('bad_signature', `${SIGNATURE_HEADERS.signature}: expected 128 lowercase hex characters`)
  if (!/^\d{1,16}$/.test(timestampText)) throw unauthenticated('bad_signature', `${SIGNATURE_HEADERS.timestamp}: expected Unix milliseconds`)
  const timestamp = Number(timestampText)
  if (Math.abs(now - timestamp) > TIMESTAMP_WINDOW_MS) {
    throw unauthenticated('stale_timestamp', `the request timestamp is ${Math.round((timestamp - now) / 1000)} s from the server's clock (window: ±300 s)`)
  }
  const message = requestSigningMessage({method: request.method, host, pathAndQuery: request.pathAndQuery, body: request.body, timestamp, nonce})
  if (!verifyHex(message, signature, signer)) {
    throw unauthenticated('bad_signature', `the signature does not verify for this request, key and host ${host} (${REQUEST_SIGNING_VERSION})`)
  }
  return {signer, timestamp, nonce, signature, host}
}

/**
 * The most nonces kept at once (about 210 bytes each in memory, 110 on disk). The rate limits bound how fast they come
 * (per key and per address, over the 600 s retention); this bounds the store whatever the number of keys and addresses.
 */
export const DEFAULT_MAX_NONCES = 1_000_000

/**
 * The replay store (§2). Its index is a map in memory, in the order nonces were used; SQLite keeps them as a log a row
 * is appended to, so a restart inside the window doesn't forget them. An append writes one page where a table keyed
 * by (signer, nonce) wrote three B-trees in random places each request: the store was the largest part of a commit.
 *
 * A nonce is written in the server's open transaction: `committed()` and `rolledBack()` say how it ended, so a nonce
 * whose row SQLite rolled back (a full disk) is forgotten and its request, answered 500, can be sent again as it was.
 * Holds at most `capacity` nonces: when full (after dropping those past retention), a signed request is refused with
 * 429 until the oldest ages out; a replay is never let through for want of room.
 */
export class NonceStore {
  /** signer + nonce → when it was used; iterated oldest first, in the log's order. */
  private readonly used = new Map<string, number>()
  private uncommitted: string[] = []
  private readonly append
  private readonly firstKeptRow
  private readonly lastRow
  private readonly dropRowsBefore

  constructor(
    db: Db,
    private readonly capacity = DEFAULT_MAX_NONCES,
  ) {
    this.append = db.prepare('INSERT INTO nonce_log (seen_at, signer, nonce) VALUES (?, ?, ?)')
    this.firstKeptRow = db.prepare<[number], number>('SELECT rowid FROM nonce_log WHERE seen_at >= ? ORDER BY rowid LIMIT 1').pluck()
    this.lastRow = db.prepare<[], number | null>('SELECT max(rowid) FROM nonce_log').pluck()
    this.dropRowsBefore = db.prepare('DELETE FROM nonce_log WHERE rowid < ?')
    const rows = db.prepare<[], {seen_at: number; signer: string; nonce: string}>('SELECT seen_at, signer, nonce FROM nonce_log ORDER BY rowid')
    for (const row of rows.iterate()) this.remember(row.signer + row.nonce, row.seen_at)
  }

  /** Records the nonce; throws 401 replayed_nonce when this key used it within the retention window. */
  use(signer: string, nonce: string, now: number): void {
    if (this.used.size >= this.capacity) {
      this.forgetOlderThanRetention(now)
      if (this.used.size >= this.capacity) {
        const oldest = this.used.values().next().value ?? now
        const retryAfterSeconds = Math.max(1, Math.ceil((oldest + NONCE_RETENTION_MS - now) / 1000))
        throw new HttpError(429, 'rate_limited', 'the marketplace is taking too many signed requests: try again later', undefined, {
          'retry-after': String(retryAfterSeconds),
        })
      }
    }
    const key = signer + nonce
    const usedAt = this.used.get(key)
    if (usedAt !== undefined && usedAt >= now - NONCE_RETENTION_MS) throw unauthenticated('replayed_nonce', 'this nonce was already used by this key')
    this.append.run(now, signer, nonce)
    this.remember(key, now)
    this.uncommitted.push(key)
  }

  /** The open transaction committed: its nonces are kept. */
  committed(): void {
    this.uncommitted = []
  }

  /** SQLite rolled the open transaction back: its nonces were never stored. */
  rolledBack(): void {
    for (const key of this.uncommitted) this.used.delete(key)
    this.uncommitted = []
  }

  /**
   * Drops the nonces used before the retention window, oldest first up to the first one still in it (the log's rows
   * with them): after a clock stepped back, a few stay until the ones before them age out.
   */
  forgetOlderThanRetention(now: number): void {
    const cutoff = now - NONCE_RETENTION_MS
    for (const [key, usedAt] of this.used) {
      if (usedAt >= cutoff) break
      this.used.delete(key)
    }
    this.dropRowsBefore.run(this.firstKeptRow.get(cutoff) ?? (this.lastRow.get() ?? 0) + 1)
  }

  get size(): number {
    return this.used.size
  }

  /** A nonce used again after its retention moves to the end, where the log appended it again. */
  private remember(key: string, usedAt: number): void {
    this.used.delete(key)
    this.used.set(key, usedAt)
  }
}

export interface DelegationRow {
  agent_pubkey: string
  provider_pubkey: string
  permissions: string
  expires_at: number | null
  label: string
  signature: string
  created_at: number
  revoked_at: number | null
  last_seen_at: number | null
}

/** Who signed a request, as far as the marketplace knows the key. */
export type Identity =
  | {kind: 'provider'; pubkey: string}
  | {kind: 'agent'; pubkey: string; delegation: DelegationRow}
  | {kind: 'other'; pubkey: string}

// Verifying a delegation costs one Ed25519 verify; the result is a pure function of the row's signed fields and its
// signature, so it is memoised by exactly those (an edited row is a different key and is verified afresh). The key is
// the fields as they are stored: the signed text is built only to verify, not on every request that looks it up.
const verifiedDelegations = new Map<string, boolean>()

function delegationSignatureValid(row: DelegationRow): boolean {
  const memoKey = JSON.stringify([row.agent_pubkey, row.provider_pubkey, row.permissions, row.expires_at, row.label, row.signature])
  let valid = verifiedDelegations.get(memoKey)
  if (valid === undefined) {
    const message = delegationMessage({
      agentPubkey: row.agent_pubkey,
      providerPubkey: row.provider_pubkey,
      permissions: row.permissions.split(',') as AgentPermission[],
      expiresAt: row.expires_at,
      label: row.label,
    })
    valid = verifyHex(message, row.signature, row.provider_pubkey)
    if (verifiedDelegations.size > 10_000) verifiedDelegations.clear()
    verifiedDelegations.set(memoKey, valid)
  }
  return valid
}

/** The provider a key acts for: its own (a main key, or a key the marketplace doesn't know), or its delegation's. */
export function delegatedProvider(identity: Identity): string {
  return identity.kind === 'agent' ? identity.delegation.provider_pubkey : identity.pubkey
}

export class IdentityResolver {
  private readonly provider
  private readonly delegation

  constructor(db: Db) {
    this.provider = db.prepare('SELECT 1 FROM providers WHERE pubkey = ?').pluck()
    this.delegation = db.prepare<[string], DelegationRow>('SELECT * FROM delegations WHERE agent_pubkey = ?')
  }

  resolve(signer: string): Identity {
    if (this.provider.get(signer) !== undefined) return {kind: 'provider', pubkey: signer}
    const delegation = this.delegation.get(signer)
    if (delegation) return {kind: 'agent', pubkey: signer, delegation}
    return {kind: 'other', pubkey: signer}
  }
}

/** What a route demands of its signer, for routes with a provider `{pk}` in the path. */
export type ProviderAccess =
  | {kind: 'main'}
  | {kind: 'agent'; permission: AgentPermission; orMain?: boolean}
  /** The provider's main key or any of its live agent keys, whatever the permissions. */
  | {kind: 'main-or-agent'}
  /**
   * The main key, or a key the marketplace doesn't know yet submitting its own delegation (offline signing: the
   * main key signed the delegation elsewhere). The handler checks that the body names the signer.
   */
  | {kind: 'main-or-own-delegation'}

/**
 * §3 for a route under /providers/{pk}: main-only routes refuse every agent key; an agent key's delegation must
 * verify, be live, name this provider and list the route's permission. Checked on every request, so a revocation
 * or an expiry fails the very next one.
 */
export function authorizeForProvider(identity: Identity, providerPubkey: string, access: ProviderAccess, now: number): void {
  if (identity.kind === 'provider') {
    if (identity.pubkey !== providerPubkey) throw forbidden('wrong_provider', 'this key belongs to another provider')
    if (access.kind === 'agent' && !access.orMain) {
      throw forbidden('permission_denied', `this route takes an agent key with the ${access.permission} permission, not the main key`)
    }
    return
  }
  if (identity.kind === 'other') {
    if (access.kind === 'main-or-own-delegation') return
    throw unauthenticated('unknown_key', 'this key is neither a registered provider nor a delegated agent key')
  }
  const {delegation} = identity
  if (access.kind === 'main' || access.kind === 'main-or-own-delegation') throw forbidden('permission_denied', 'this route takes the provider main key; agent keys are refused')
  if (delegation.provider_pubkey !== providerPubkey) throw forbidden('wrong_provider', 'this agent key is delegated by another provider')
  assertDelegationLive(delegation, now)
  if (access.kind === 'agent' && !delegation.permissions.split(',').includes(access.permission)) {
    throw forbidden('permission_denied', `the delegation does not grant ${access.permission}`)
  }
}

export function assertDelegationLive(delegation: DelegationRow, now: number): void {
  if (!delegationSignatureValid(delegation)) throw forbidden('permission_denied', 'the delegation signature does not verify')
  if (delegation.revoked_at !== null) throw forbidden('delegation_revoked', 'the delegation of this agent key was revoked')
  if (delegation.expires_at !== null && delegation.expires_at <= now) throw forbidden('delegation_expired', 'the delegation of this agent key has expired')
}
