import {constants, createHash, createPublicKey, verify, type KeyObject} from 'node:crypto'

/**
 * TPM 2.0 quotes (PROTOCOL §14), read and checked in TypeScript with nothing but node:crypto: the marketplace
 * verifies what an agent's TPM signed, and the agent checks its own quote with the same code before sending it.
 * Layouts are from the TPM 2.0 Library, Part 2 (Structures); every integer is big-endian.
 */

/** TPM_GENERATED_VALUE: the TPM made this structure itself (it refuses to sign outside data starting so). */
export const TPM_GENERATED_VALUE = 0xff544347
/** TPM_ST_ATTEST_QUOTE */
export const TPM_ST_ATTEST_QUOTE = 0x8018

const HASH_ALGORITHMS = {0x0004: 'sha1', 0x000b: 'sha256', 0x000c: 'sha384', 0x000d: 'sha512'} as const
export type PcrBank = (typeof HASH_ALGORITHMS)[keyof typeof HASH_ALGORITHMS]
const HASH_SIZES: Readonly<Record<PcrBank, number>> = {sha1: 20, sha256: 32, sha384: 48, sha512: 64}

const TPM_ALG_RSASSA = 0x0014
const TPM_ALG_RSAPSS = 0x0016
const TPM_ALG_ECDSA = 0x0018

/** The PCRs of one bank a quote covers, ascending. */
export interface PcrSelection {
  bank: PcrBank
  pcrs: number[]
}

export interface QuoteAttest {
  magic: number
  type: number
  /** The signing key's qualified name. */
  qualifiedSigner: Buffer
  /** The caller's qualifying data (`tpm2_quote -q`): for §14, the sha256 of the envelope. */
  extraData: Buffer
  clockInfo: {clock: bigint; resetCount: number; restartCount: number; safe: boolean}
  firmwareVersion: bigint
  pcrSelections: PcrSelection[]
  /** The hash (of the AK's scheme) of the selected PCR values concatenated in selection order. */
  pcrDigest: Buffer
}

export type QuoteSignature =
  | {scheme: 'ecdsa'; hash: PcrBank; r: Buffer; s: Buffer}
  | {scheme: 'rsassa' | 'rsapss'; hash: PcrBank; signature: Buffer}

/** Why a quote was refused; `reason` is stable, `message` says what was found. */
export class QuoteError extends Error {
  constructor(
    readonly reason:
      | 'malformed'
      | 'bad_magic'
      | 'not_a_quote'
      | 'extra_data_mismatch'
      | 'pcr_selection_mismatch'
      | 'pcr_digest_mismatch'
      | 'unexpected_pcr_digest'
      | 'unsupported_key'
      | 'bad_signature',
    message: string,
  ) {
    super(message)
    this.name = 'QuoteError'
  }
}

/** A cursor over TPM marshalled bytes that refuses to read past the end. */
class Reader {
  private offset = 0

  constructor(private readonly bytes: Buffer) {}

  private take(length: number, what: string): Buffer {
    if (this.offset + length > this.bytes.length) throw new QuoteError('malformed', `${what}: the structure ends after ${this.bytes.length} bytes`)
    const slice = this.bytes.subarray(this.offset, this.offset + length)
    this.offset += length
    return slice
  }

  u8(what: string): number {
    return this.take(1, what).readUInt8(0)
  }

  u16(what: string): number {
    return this.take(2, what).readUInt16BE(0)
  }

  u32(what: string): number {
    return this.take(4, what).readUInt32BE(0)
  }

  u64(what: string): bigint {
    return this.take(8, what).readBigUInt64BE(0)
  }

  /** A TPM2B: a u16 size and that many bytes. */
  sized(what: string): Buffer {
    return Buffer.from(this.take(this.u16(`${what} size`), what))
  }

  end(what: string): void {
    if (this.offset !== this.bytes.length) throw new QuoteError('malformed', `${what}: ${this.bytes.length - this.offset} bytes after the end of the structure`)
  }
}

function bankOf(algorithm: number, what: string): PcrBank {
  const bank = HASH_ALGORITHMS[algorithm as keyof typeof HASH_ALGORITHMS]
  if (!bank) throw new QuoteError('malformed', `${what}: unknown hash algorithm 0x${algorithm.toString(16).padStart(4, '0')}`)
  return bank
}

/** Reads a TPML_PCR_SELECTION: a count, then per bank its hash, the bitmap size and the bitmap (bit i of byte j: PCR 8j+i). */
function readPcrSelections(reader: Reader): PcrSelection[] {
  const count = reader.u32('pcrSelect count')
  if (count > 16) throw new QuoteError('malformed', `pcrSelect: ${count} banks is more than a TPM has`)
  const selections: PcrSelection[] = []
  for (let index = 0; index < count; index++) {
    const bank = bankOf(reader.u16('pcrSelect hash'), 'pcrSelect')
    const size = reader.u8('sizeofSelect')
    const pcrs: number[] = []
    for (let byte = 0; byte < size; byte++) {
      const bits = reader.u8('pcrSelect bitmap')
      for (let bit = 0; bit < 8; bit++) if (bits & (1 << bit)) pcrs.push(byte * 8 + bit)
    }
    selections.push({bank, pcrs})
  }
  return selections
}

/**
 * Parses a TPMS_ATTEST that must be a quote: magic, type, qualifiedSigner, extraData, clockInfo (clock u64,
 * resetCount u32, restartCount u32, safe u8), firmwareVersion u64, then TPMS_QUOTE_INFO (TPML_PCR_SELECTION and the
 * TPM2B pcrDigest). Throws QuoteError with `bad_magic`, `not_a_quote` or `malformed`.
 */
export function parseQuoteAttest(bytes: Uint8Array): QuoteAttest {
  const reader = new Reader(Buffer.from(bytes))
  const magic = reader.u32('magic')
  if (magic !== TPM_GENERATED_VALUE) throw new QuoteError('bad_magic', `magic is 0x${magic.toString(16)}, not TPM_GENERATED_VALUE (0xff544347)`)
  const type = reader.u16('type')
  if (type !== TPM_ST_ATTEST_QUOTE) throw new QuoteError('not_a_quote', `type is 0x${type.toString(16)}, not TPM_ST_ATTEST_QUOTE (0x8018)`)
  const qualifiedSigner = reader.sized('qualifiedSigner')
  const extraData = reader.sized('extraData')
  const clockInfo = {
    clock: reader.u64('clock'),
    resetCount: reader.u32('resetCount'),
    restartCount: reader.u32('restartCount'),
    safe: reader.u8('safe') === 1,
  }
  const firmwareVersion = reader.u64('firmwareVersion')
  const pcrSelections = readPcrSelections(reader)
  const pcrDigest = reader.sized('pcrDigest')
  reader.end('TPMS_ATTEST')
  return {magic, type, qualifiedSigner, extraData, clockInfo, firmwareVersion, pcrSelections, pcrDigest}
}

/** Parses a TPMT_SIGNATURE as `tpm2_quote -s` writes it by default (`-f tss`): ECDSA (r, s) or RSASSA/RSAPSS. */
export function parseQuoteSignature(bytes: Uint8Array): QuoteSignature {
  const reader = new Reader(Buffer.from(bytes))
  const scheme = reader.u16('sigAlg')
  const hash = bankOf(reader.u16('signature hash'), 'signature')
  let signature: QuoteSignature
  if (scheme === TPM_ALG_ECDSA) signature = {scheme: 'ecdsa', hash, r: reader.sized('signatureR'), s: reader.sized('signatureS')}
  else if (scheme === TPM_ALG_RSASSA) signature = {scheme: 'rsassa', hash, signature: reader.sized('signature')}
  else if (scheme === TPM_ALG_RSAPSS) signature = {scheme: 'rsapss', hash, signature: reader.sized('signature')}
  else throw new QuoteError('unsupported_key', `signature scheme 0x${scheme.toString(16).padStart(4, '0')} is not ECDSA, RSASSA or RSAPSS`)
  reader.end('TPMT_SIGNATURE')
  return signature
}

/** Parses `sha256:0,1,2` (banks joined by `+`, as tpm2-tools writes them) into sorted selections. */
export function parsePcrSelection(text: string): PcrSelection[] {
  const banks = text.split('+').map((part) => {
    const match = /^(sha1|sha256|sha384|sha512):(\d{1,2}(?:,\d{1,2})*)$/.exec(part.trim())
    if (!match) throw new QuoteError('malformed', `"${part}" is not a PCR selection like sha256:0,1,2,3,4,5,6,7`)
    const pcrs = [...new Set(match[2]?.split(',').map(Number))].sort((a, b) => a - b)
    if (pcrs.some((pcr) => pcr > 23)) throw new QuoteError('malformed', `"${part}": a TPM has PCRs 0 to 23`)
    return {bank: match[1] as PcrBank, pcrs}
  })
  if (new Set(banks.map((selection) => selection.bank)).size !== banks.length) throw new QuoteError('malformed', `"${text}" names a bank twice`)
  return banks
}

export function formatPcrSelection(selections: readonly PcrSelection[]): string {
  return selections.map((selection) => `${selection.bank}:${selection.pcrs.join(',')}`).join('+')
}

function sameSelection(a: readonly PcrSelection[], b: readonly PcrSelection[]): boolean {
  const normal = (selections: readonly PcrSelection[]) =>
    formatPcrSelection(selections.filter((selection) => selection.pcrs.length > 0).toSorted((x, y) => x.bank.localeCompare(y.bank)))
  return normal(a) === normal(b)
}

/** The digest a TPM puts in a quote: the hash of the selected PCR values, concatenated in selection order. */
export function pcrDigestOf(values: readonly Uint8Array[], hash: PcrBank = 'sha256'): Buffer {
  const digest = createHash(hash)
  for (const value of values) digest.update(value)
  return digest.digest()
}

/** P-256 and P-384 scalars: r and s are left-padded to this many bytes for an IEEE P1363 signature. */
const CURVE_SIZES: Readonly<Record<string, number>> = {prime256v1: 32, 'P-256': 32, secp384r1: 48, 'P-384': 48, secp521r1: 66, 'P-521': 66}

function leftPad(value: Buffer, size: number): Buffer {
  if (value.length > size) throw new QuoteError('bad_signature', 'an ECDSA signature component is longer than the curve allows')
  return Buffer.concat([Buffer.alloc(size - value.length), value])
}

function signatureVerifies(attest: Uint8Array, signature: QuoteSignature, key: KeyObject): boolean {
  if (signature.scheme === 'ecdsa') {
    if (key.asymmetricKeyType !== 'ec') throw new QuoteError('unsupported_key', 'an ECDSA signature needs an EC attestation key')
    const size = CURVE_SIZES[key.asymmetricKeyDetails?.namedCurve ?? '']
    if (!size) throw new QuoteError('unsupported_key', `curve ${key.asymmetricKeyDetails?.namedCurve ?? 'unknown'} is not supported`)
    const raw = Buffer.concat([leftPad(signature.r, size), leftPad(signature.s, size)])
    return verify(signature.hash, attest, {key, dsaEncoding: 'ieee-p1363'}, raw)
  }
  if (key.asymmetricKeyType !== 'rsa') throw new QuoteError('unsupported_key', `an ${signature.scheme.toUpperCase()} signature needs an RSA attestation key`)
  const padding = signature.scheme === 'rsassa' ? {padding: constants.RSA_PKCS1_PADDING} : {padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO}
  return verify(signature.hash, attest, {key, ...padding}, signature.signature)
}

/** Reads an attestation key's public PEM (SPKI, as `tpm2_createak -f pem` writes it); EC and RSA keys only. */
export function attestationKey(publicPem: string): KeyObject {
  let key: KeyObject
  try {
    key = createPublicKey(publicPem)
  } catch (error) {
    throw new QuoteError('unsupported_key', `the attestation key is not a public key in PEM: ${(error as Error).message}`)
  }
  if (key.asymmetricKeyType !== 'ec' && key.asymmetricKeyType !== 'rsa') throw new QuoteError('unsupported_key', `a ${key.asymmetricKeyType ?? 'key'} attestation key is not supported (EC or RSA)`)
  return key
}

export interface QuoteCheck {
  /** The TPMS_ATTEST bytes the TPM signed. */
  quote: Uint8Array
  /** The TPMT_SIGNATURE bytes. */
  signature: Uint8Array
  /** The enrolled attestation key. */
  akPublicPem: string
  /** What `extraData` must be (for §14, the sha256 of the envelope). */
  extraData: Uint8Array
  /** The enrolled PCR selection. */
  pcrSelection: readonly PcrSelection[]
  /** The PCR digest the sender claims beside the quote; must equal the quote's. */
  claimedPcrDigest?: Uint8Array
  /** The digest enrolled as expected (`--pin-pcrs`); when given, the quote's must equal it. */
  expectedPcrDigest?: Uint8Array
}

/**
 * Checks a quote end to end: structure, magic and type, the AK's signature over the exact TPMS_ATTEST bytes, the
 * qualifying data, the PCR selection and digest. Returns the parsed quote; throws QuoteError naming the first failure.
 * The signature is checked before the contents, so nothing is read into a quote no enrolled key made.
 */
export function verifyQuote(check: QuoteCheck): QuoteAttest {
  const attest = parseQuoteAttest(check.quote)
  const signature = parseQuoteSignature(check.signature)
  if (!signatureVerifies(check.quote, signature, attestationKey(check.akPublicPem))) {
    throw new QuoteError('bad_signature', 'the quote signature does not verify against the enrolled attestation key')
  }
  if (!attest.extraData.equals(Buffer.from(check.extraData))) {
    throw new QuoteError('extra_data_mismatch', 'the quote\'s qualifying data is not the digest of this envelope')
  }
  if (!sameSelection(attest.pcrSelections, check.pcrSelection)) {
    throw new QuoteError('pcr_selection_mismatch', `the quote covers ${formatPcrSelection(attest.pcrSelections)}, not the enrolled ${formatPcrSelection(check.pcrSelection)}`)
  }
  const digestSize = HASH_SIZES[signature.hash]
  if (attest.pcrDigest.length !== digestSize) throw new QuoteError('malformed', `pcrDigest is ${attest.pcrDigest.length} bytes, not the ${digestSize} of ${signature.hash}`)
  if (check.claimedPcrDigest && !attest.pcrDigest.equals(Buffer.from(check.claimedPcrDigest))) {
    throw new QuoteError('pcr_digest_mismatch', 'the pcr_digest sent is not the one in the quote')
  }
  if (check.expectedPcrDigest && !attest.pcrDigest.equals(Buffer.from(check.expectedPcrDigest))) {
    throw new QuoteError('unexpected_pcr_digest', 'the PCR values differ from the enrolled ones: the machine booted into another state')
  }
  return attest
}
