import {createHash, createPrivateKey, createPublicKey, randomBytes, randomFillSync, sign, verify, type KeyObject} from 'node:crypto'

import {fromHex, isHex, toHex} from './hex.js'

/**
 * The one signing core. Node's crypto signs about 130 times faster than tweetnacl here, and Ed25519 is
 * deterministic, so the bytes are the same as tweetnacl's.
 */

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

export interface KeyPair {
  /** 32-byte Ed25519 public key. */
  publicKey: Uint8Array
  /** 32-byte Ed25519 seed (the secret key). */
  seed: Uint8Array
}

const privateKeyCache = new WeakMap<Uint8Array, KeyObject>()
const publicKeyCache = new Map<string, KeyObject>()

function privateKeyObject(seed: Uint8Array): KeyObject {
  let key = privateKeyCache.get(seed)
  if (!key) {
    key = createPrivateKey({key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8'})
    privateKeyCache.set(seed, key)
  }
  return key
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const id = toHex(publicKey)
  let key = publicKeyCache.get(id)
  if (!key) {
    key = createPublicKey({key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki'})
    if (publicKeyCache.size > 10_000) publicKeyCache.clear()
    publicKeyCache.set(id, key)
  }
  return key
}

export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  if (seed.length !== 32) throw new RangeError('an Ed25519 seed is 32 bytes')
  const spki = createPublicKey(privateKeyObject(seed)).export({format: 'der', type: 'spki'})
  return {publicKey: new Uint8Array(spki.subarray(SPKI_ED25519_PREFIX.length)), seed}
}

export function generateKeyPair(): KeyPair {
  return keyPairFromSeed(new Uint8Array(randomBytes(32)))
}

export function signBytes(message: Uint8Array | string, seed: Uint8Array): Uint8Array {
  const data = typeof message === 'string' ? Buffer.from(message, 'utf8') : message
  return new Uint8Array(sign(null, data, privateKeyObject(seed)))
}

export function verifyBytes(message: Uint8Array | string, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false
  const data = typeof message === 'string' ? Buffer.from(message, 'utf8') : message
  try {
    return verify(null, data, publicKeyObject(publicKey), signature)
  } catch {
    return false
  }
}

/** Verifies hex-encoded signature and key, returning false (never throwing) for malformed input. */
export function verifyHex(message: Uint8Array | string, signatureHex: string, publicKeyHex: string): boolean {
  if (!isHex(signatureHex, 64) || !isHex(publicKeyHex, 32)) return false
  return verifyBytes(message, fromHex(signatureHex, 64, 'signature'), fromHex(publicKeyHex, 32, 'public key'))
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** A short, stable name for a public key: `SHA256:` and its base64 digest, as ssh prints fingerprints. */
export function fingerprint(publicKey: Uint8Array): string {
  return 'SHA256:' + createHash('sha256').update(publicKey).digest('base64').replace(/=+$/, '')
}

// Nonces come from a pool filled 4 KiB at a time: one randomBytes call per signed request cost more than its hashing.
const randomPool = Buffer.alloc(4096)
let randomPoolUsed = randomPool.length

export function randomHex(bytes: number): string {
  if (bytes > randomPool.length) return randomBytes(bytes).toString('hex')
  if (randomPoolUsed + bytes > randomPool.length) {
    randomFillSync(randomPool)
    randomPoolUsed = 0
  }
  const hex = randomPool.toString('hex', randomPoolUsed, randomPoolUsed + bytes)
  randomPoolUsed += bytes
  return hex
}

/** PROTOCOL §2: the headers of a signed request. */
export const SIGNATURE_HEADERS = {
  key: 'x-outpost-key',
  timestamp: 'x-outpost-timestamp',
  nonce: 'x-outpost-nonce',
  signature: 'x-outpost-signature',
} as const

/** PROTOCOL §2: the first line of a signed request's message. v1 (without the host line) is no longer accepted. */
export const REQUEST_SIGNING_VERSION = 'outpost-request-v2'

export interface RequestToSign {
  method: string
  /**
   * The Host header exactly as sent (what `new URL(endpoint).host` gives and fetch sends: lower case, with the port
   * when the URL names one other than the scheme's default). Signed so a request made for one marketplace can't be
   * replayed to another.
   */
  host: string
  /** Path and query exactly as sent, starting with /api/v1. */
  pathAndQuery: string
  body?: Uint8Array | string
  timestamp: number
  nonce: string
}

/** The Host header a request to this URL carries: the URL's host, lower case, with a non-default port. */
export function hostHeaderOf(url: string | URL): string {
  return new URL(url).host.toLowerCase()
}

export function requestSigningMessage(request: RequestToSign): string {
  return [
    REQUEST_SIGNING_VERSION,
    String(request.timestamp),
    request.nonce,
    request.method.toUpperCase(),
    request.host.toLowerCase(),
    request.pathAndQuery,
    sha256Hex(request.body ?? ''),
  ].join('\n')
}

export interface SignedRequestHeaders {
  'X-Outpost-Key': string
  'X-Outpost-Timestamp': string
  'X-Outpost-Nonce': string
  'X-Outpost-Signature': string
}

export function signRequest(
  keyPair: KeyPair,
  request: Omit<RequestToSign, 'nonce' | 'timestamp'> & Partial<Pick<RequestToSign, 'nonce' | 'timestamp'>>,
): SignedRequestHeaders {
  const full: RequestToSign = {...request, timestamp: request.timestamp ?? Date.now(), nonce: request.nonce ?? randomHex(16)}
  return {
    'X-Outpost-Key': toHex(keyPair.publicKey),
    'X-Outpost-Timestamp': String(full.timestamp),
    'X-Outpost-Nonce': full.nonce,
    'X-Outpost-Signature': toHex(signBytes(requestSigningMessage(full), keyPair.seed)),
  }
}

/**
 * Canonical JSON: object keys sorted, no spaces. Used for usage records (PROTOCOL §7), so a record can be
 * verified on its own long after the request that carried it.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new RangeError('canonical JSON has no NaN or Infinity')
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) return '[' + value.map((item) => canonicalJson(item)).join(',') + ']'
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, item]) => item !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return '{' + entries.map(([key, item]) => JSON.stringify(key) + ':' + canonicalJson(item)).join(',') + '}'
}

export interface UsageRecordFields {
  record_id: string
  contract_id: string
  period_start: number
  period_end: number
  cpu_core_seconds: number
  memory_mb_seconds: number
  storage_gb_seconds: number
  gpu_seconds: number
  signer: string
}

export type SignedUsageRecord = UsageRecordFields & {signature: string}

export function usageRecordMessage(record: UsageRecordFields): string {
  const {signature: _ignored, ...fields} = record as UsageRecordFields & {signature?: string}
  return 'outpost-usage-v1\n' + canonicalJson(fields)
}

export function signUsageRecord(keyPair: KeyPair, record: Omit<UsageRecordFields, 'signer'>): SignedUsageRecord {
  const fields: UsageRecordFields = {...record, signer: toHex(keyPair.publicKey)}
  return {...fields, signature: toHex(signBytes(usageRecordMessage(fields), keyPair.seed))}
}

export function verifyUsageRecord(record: SignedUsageRecord): boolean {
  return verifyHex(usageRecordMessage(record), record.signature, record.signer)
}

/** PROTOCOL §12: a job's output, inline (`data_b64`, up to 512 KiB) or uploaded first and named by digest. */
export interface ResultOutput {
  digest: string
  size_bytes: number
  data_b64?: string
}

/** PROTOCOL §14: a TPM2_Quote over the envelope. */
export interface ResultAttestation {
  type: 'tpm2-quote'
  quote_b64: string
  signature_b64: string
  pcr_digest: string
}

export interface ResultEnvelopeFields {
  job_id: string
  lease_id: string
  program_digest: string
  input_digest: string
  output: ResultOutput
  started_at: number
  finished_at: number
  attestation?: ResultAttestation
  signer: string
}

export type SignedResultEnvelope = ResultEnvelopeFields & {signature: string}

/** PROTOCOL §12: `outpost-result-v1\n` and the canonical JSON of every field but `signature`. */
export function resultEnvelopeMessage(envelope: ResultEnvelopeFields): string {
  const {signature: _ignored, ...fields} = envelope as ResultEnvelopeFields & {signature?: string}
  return 'outpost-result-v1\n' + canonicalJson(fields)
}

/**
 * PROTOCOL §14: the 32 bytes a TPM2_Quote carries as qualifying data (`extraData`): the sha256 of the envelope's
 * canonical JSON without `attestation` and `signature`. The signer is part of it, so set it before quoting.
 */
export function resultAttestationData(envelope: ResultEnvelopeFields): Buffer {
  const {signature: _signature, attestation: _attestation, ...fields} = envelope as ResultEnvelopeFields & {signature?: string}
  return createHash('sha256').update(canonicalJson(fields)).digest()
}

/** Signs an envelope with the agent key, which becomes its `signer`. */
export function signResultEnvelope(keyPair: KeyPair, envelope: Omit<ResultEnvelopeFields, 'signer'>): SignedResultEnvelope {
  const fields: ResultEnvelopeFields = {...envelope, signer: toHex(keyPair.publicKey)}
  return {...fields, signature: toHex(signBytes(resultEnvelopeMessage(fields), keyPair.seed))}
}

export function verifyResultEnvelope(envelope: SignedResultEnvelope): boolean {
  return verifyHex(resultEnvelopeMessage(envelope), envelope.signature, envelope.signer)
}
