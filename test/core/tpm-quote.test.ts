import {createHash, generateKeyPairSync, sign} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  formatPcrSelection,
  parsePcrSelection,
  parseQuoteAttest,
  parseQuoteSignature,
  pcrDigestOf,
  QuoteError,
  verifyQuote,
  type QuoteCheck,
} from '../../src/core/tpm-quote.js'
import {Swtpm, swtpmAvailability} from '../support/swtpm.js'

/**
 * The TPMS_ATTEST parser and the quote check (PROTOCOL §14) against real quotes: fixtures recorded from swtpm by
 * scripts/record-tpm-fixtures.ts, each beside what `tpm2_print` read from it, and, when swtpm is installed, fresh quotes
 * checked by this code and by `tpm2_checkquote` side by side.
 */

interface RecordedQuote {
  label: string
  selection: string
  qualifying_data: string
  quote_b64: string
  signature_b64: string
  pcr_values: string[]
  tpm2_print: Record<string, string>
}
interface Fixtures {
  ecc: {ak_pem: string; quotes: RecordedQuote[]}
  rsa: {ak_pem: string; quotes: RecordedQuote[]}
}

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/tpm/quotes.json', import.meta.url), 'utf8')) as Fixtures
const [eccQuote, eccTwoPcrs, eccExtended] = fixtures.ecc.quotes as [RecordedQuote, RecordedQuote, RecordedQuote]
const [rsaQuote] = fixtures.rsa.quotes as [RecordedQuote]

const bytes = (b64: string) => Buffer.from(b64, 'base64')

function checkOf(recorded: RecordedQuote, akPem: string, overrides: Partial<QuoteCheck> = {}): QuoteCheck {
  return {
    quote: bytes(recorded.quote_b64),
    signature: bytes(recorded.signature_b64),
    akPublicPem: akPem,
    extraData: Buffer.from(recorded.qualifying_data, 'hex'),
    pcrSelection: parsePcrSelection(recorded.selection),
    ...overrides,
  }
}

function reasonOf(check: QuoteCheck): string {
  try {
    verifyQuote(check)
    return 'accepted'
  } catch (error) {
    if (error instanceof QuoteError) return error.reason
    throw error
  }
}

describe('TPMS_ATTEST parser on recorded quotes', () => {
  it('reads every field as tpm2_print reads it', () => {
    for (const recorded of [eccQuote, eccTwoPcrs, eccExtended, rsaQuote]) {
      const attest = parseQuoteAttest(bytes(recorded.quote_b64))
      const printed = recorded.tpm2_print
      expect(attest.magic.toString(16)).toBe(printed.magic)
      expect(attest.type.toString(16)).toBe(printed.type)
      expect(attest.qualifiedSigner.toString('hex')).toBe(printed.qualifiedSigner)
      expect(attest.extraData.toString('hex')).toBe(printed.extraData)
      expect(attest.extraData.toString('hex')).toBe(recorded.qualifying_data)
      expect(attest.clockInfo).toEqual({clock: BigInt(printed.clock ?? ''), resetCount: Number(printed.resetCount), restartCount: Number(printed.restartCount), safe: printed.safe === '1'})
      // tpm2_print dumps the 64-bit firmware version in host (little-endian) byte order.
      const firmware = Buffer.alloc(8)
      firmware.writeBigUInt64BE(attest.firmwareVersion)
      expect(firmware.reverse().toString('hex')).toBe(printed.firmwareVersion)
      expect(formatPcrSelection(attest.pcrSelections)).toBe(recorded.selection)
      expect(attest.pcrDigest.toString('hex')).toBe(printed.pcrDigest)
    }
  })

  it('the PCR digest is the sha256 of the selected PCR values, and extending a PCR changes it', () => {
    for (const recorded of [eccQuote, eccTwoPcrs, eccExtended]) {
      const values = recorded.pcr_values.map((value) => Buffer.from(value, 'hex'))
      expect(parseQuoteAttest(bytes(recorded.quote_b64)).pcrDigest.equals(pcrDigestOf(values))).toBe(true)
    }
    expect(eccExtended.tpm2_print.pcrDigest).not.toBe(eccQuote.tpm2_print.pcrDigest)
  })

  it('reads the TPMT_SIGNATURE of an ECDSA and an RSASSA key', () => {
    const ecdsa = parseQuoteSignature(bytes(eccQuote.signature_b64))
    expect(ecdsa).toMatchObject({scheme: 'ecdsa', hash: 'sha256'})
    if (ecdsa.scheme !== 'ecdsa') throw new Error('expected ECDSA')
    expect(ecdsa.r.length + ecdsa.s.length).toBeLessThanOrEqual(64)
    const rsassa = parseQuoteSignature(bytes(rsaQuote.signature_b64))
    expect(rsassa).toMatchObject({scheme: 'rsassa', hash: 'sha256'})
    if (rsassa.scheme === 'ecdsa') throw new Error('expected RSASSA')
    expect(rsassa.signature.length).toBe(256)
  })

  it('refuses a wrong magic, another attestation type, a truncated and an overlong structure', () => {
    const quote = bytes(eccQuote.quote_b64)
    const badMagic = Buffer.from(quote)
    badMagic[0] = 0xfe
    expect(() => parseQuoteAttest(badMagic)).toThrow(expect.objectContaining({reason: 'bad_magic'}))
    const certify = Buffer.from(quote)
    certify.writeUInt16BE(0x8017, 4)
    expect(() => parseQuoteAttest(certify)).toThrow(expect.objectContaining({reason: 'not_a_quote'}))
    expect(() => parseQuoteAttest(quote.subarray(0, quote.length - 1))).toThrow(expect.objectContaining({reason: 'malformed'}))
    expect(() => parseQuoteAttest(Buffer.concat([quote, Buffer.from([0])]))).toThrow(expect.objectContaining({reason: 'malformed'}))
  })

  it('parses and formats PCR selections, refusing nonsense', () => {
    expect(parsePcrSelection('sha256:7,0,1')).toEqual([{bank: 'sha256', pcrs: [0, 1, 7]}])
    expect(formatPcrSelection(parsePcrSelection('sha1:0+sha256:0,1'))).toBe('sha1:0+sha256:0,1')
    for (const bad of ['sha256:', 'md5:0', 'sha256:24', 'sha256:0+sha256:1', 'sha256 0,1']) expect(() => parsePcrSelection(bad), bad).toThrow(QuoteError)
  })
})

describe('quote check on recorded quotes', () => {
  it('accepts an ECDSA and an RSASSA quote by the enrolled key over the expected data', () => {
    expect(reasonOf(checkOf(eccQuote, fixtures.ecc.ak_pem))).toBe('accepted')
    expect(reasonOf(checkOf(rsaQuote, fixtures.rsa.ak_pem))).toBe('accepted')
    const pinned = Buffer.from(eccQuote.tpm2_print.pcrDigest ?? '', 'hex')
    expect(reasonOf(checkOf(eccQuote, fixtures.ecc.ak_pem, {expectedPcrDigest: pinned, claimedPcrDigest: pinned}))).toBe('accepted')
  })

  it('names each failure: other data, another key, a tampered quote, another selection, changed PCRs', () => {
    const ak = fixtures.ecc.ak_pem
    expect(reasonOf(checkOf(eccQuote, ak, {extraData: createHash('sha256').update('another envelope').digest()}))).toBe('extra_data_mismatch')
    expect(reasonOf(checkOf(eccQuote, fixtures.rsa.ak_pem))).toBe('unsupported_key')
    const otherEcKey = generateKeyPairSync('ec', {namedCurve: 'P-256'}).publicKey.export({type: 'spki', format: 'pem'}).toString()
    expect(reasonOf(checkOf(eccQuote, otherEcKey))).toBe('bad_signature')
    const tampered = bytes(eccQuote.quote_b64)
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 1, tampered.length - 1)
    expect(reasonOf(checkOf(eccQuote, ak, {quote: tampered}))).toBe('bad_signature')
    expect(reasonOf(checkOf(eccTwoPcrs, ak, {pcrSelection: parsePcrSelection('sha256:0,1,2,3,4,5,6,7')}))).toBe('pcr_selection_mismatch')
    const before = Buffer.from(eccQuote.tpm2_print.pcrDigest ?? '', 'hex')
    expect(reasonOf(checkOf(eccExtended, ak, {expectedPcrDigest: before}))).toBe('unexpected_pcr_digest')
    expect(reasonOf(checkOf(eccExtended, ak, {claimedPcrDigest: before}))).toBe('pcr_digest_mismatch')
  })

  it('refuses a structure signed by the key that is not a TPM-generated quote', () => {
    // A key that signs anything can't pass outside data off as a quote: the magic and type are checked.
    const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: 'P-256'})
    const forged = bytes(eccQuote.quote_b64)
    forged.writeUInt32BE(0x00544347, 0)
    const raw = sign('sha256', forged, {key: privateKey, dsaEncoding: 'ieee-p1363'})
    const signature = Buffer.concat([Buffer.from([0x00, 0x18, 0x00, 0x0b, 0x00, 0x20]), raw.subarray(0, 32), Buffer.from([0x00, 0x20]), raw.subarray(32)])
    expect(reasonOf(checkOf(eccQuote, publicKey.export({type: 'spki', format: 'pem'}).toString(), {quote: forged, signature}))).toBe('bad_magic')
  })
})

const availability = swtpmAvailability()

describe.skipIf(!availability.available)(`live swtpm against tpm2_checkquote${availability.available ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let tpm: Swtpm

  beforeAll(async () => {
    tpm = await Swtpm.start()
  })
  afterAll(() => tpm?.stop())

  it('agrees with tpm2_checkquote on fresh ECDSA and RSA quotes, and on tampered ones', async () => {
    for (const type of ['ecc', 'rsa'] as const) {
      const ak = await tpm.createAk(type)
      const data = createHash('sha256').update(`live ${type}`).digest()
      const quote = await tpm.quote(ak, data)
      const check: QuoteCheck = {quote: quote.quote, signature: quote.signature, akPublicPem: ak.pem, extraData: data, pcrSelection: parsePcrSelection('sha256:0,1,2,3,4,5,6,7')}
      expect(await tpm.checkquote(ak.pem, quote, data), `${type}: tpm2_checkquote`).toBe(true)
      expect(reasonOf(check), type).toBe('accepted')
      const values = await tpm.pcrValues([0, 1, 2, 3, 4, 5, 6, 7])
      expect(verifyQuote(check).pcrDigest.equals(pcrDigestOf(values))).toBe(true)

      const otherData = createHash('sha256').update('other').digest()
      expect(await tpm.checkquote(ak.pem, quote, otherData), `${type}: tpm2_checkquote, other data`).toBe(false)
      expect(reasonOf({...check, extraData: otherData})).toBe('extra_data_mismatch')
    }
  })
})
