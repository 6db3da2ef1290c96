import {createPublicKey, randomBytes, X509Certificate} from 'node:crypto'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {ExitCode, UserError} from '../core/errors.js'
import {attestationKey, formatPcrSelection, parsePcrSelection, QuoteError, verifyQuote, type PcrSelection} from '../core/tpm-quote.js'
import {HandleList, TPM_RC_HANDLE_1, TpmCommandError, tpmIdentity, TpmTools, type TpmIdentity} from './tpm-tools.js'

/** TCG EK Credential Profile: the NV indices of the EK certificates (RSA 2048, then ECC NIST P-256). */
export const EK_CERTIFICATE_INDICES = {rsa: 0x01c00002, ecc: 0x01c0000a} as const

export interface TpmQuote {
  /** The TPMS_ATTEST bytes the TPM signed. */
  quote: Buffer
  /** The TPMT_SIGNATURE bytes. */
  signature: Buffer
  /** The PCRs the quote covers. */
  pcrSelection: PcrSelection[]
  /** The TPM's digest of those PCRs' values (from the quote itself). */
  pcrDigest: Buffer
}

export interface EndorsementCertificate {
  pem: string
  /** The NV index it was read from. */
  index: number
  subject: string
  issuer: string
  /** Whether the certificate's public key is this TPM's EK (made from the default template). */
  matchesEk: boolean
}

export interface AttestationKeyInfo {
  handle: string
  /** SPKI PEM. */
  publicPem: string
  /** True when this call made the key (and persisted it); false when it was already there. */
  created: boolean
}

const HEX = (value: number) => `0x${value.toString(16).padStart(8, '0')}`

/**
 * One TPM, through tpm2-tools. The attestation key (AK) is a restricted ECDSA P-256 signing key made under the
 * endorsement key (EK) and kept at a persistent handle, so it outlives reboots and TPM restarts (a saved context does
 * not). A quote is checked here with the same code the marketplace uses before it is handed out.
 */
export class Tpm {
  private readonly tools: TpmTools

  constructor(
    readonly tcti: string,
    readonly akHandle: string,
  ) {
    this.tools = new TpmTools(tcti)
  }

  private async withDir<T>(use: (dir: string) => Promise<T>): Promise<T> {
    const dir = await mkdtemp(join(tmpdir(), 'outpost-tpm-'))
    try {
      return await use(dir)
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  }

  /** Who made the TPM; throws the reason when it doesn't answer. */
  async identify(): Promise<TpmIdentity> {
    return tpmIdentity(await this.tools.run('tpm2_getcap', ['properties-fixed'], tmpdir()))
  }

  /** The public key at the AK handle, or undefined when the handle is empty. */
  async attestationKeyPublic(): Promise<string | undefined> {
    return this.withDir(async (dir) => {
      try {
        await this.tools.run('tpm2_readpublic', ['-c', this.akHandle, '-f', 'pem', '-o', 'ak.pem'], dir)
      } catch (error) {
        if (error instanceof TpmCommandError && error.tpmCode === TPM_RC_HANDLE_1) return undefined
        throw error
      }
      return readFile(join(dir, 'ak.pem'), 'utf8')
    })
  }

  /**
   * The AK at the configured handle: reused when `expectedPem` (the one this host recorded) is there, made and
   * persisted when the handle is empty. A handle holding another key is refused: it is not ours to evict.
   */
  async ensureAttestationKey(expectedPem: string | undefined): Promise<AttestationKeyInfo> {
    const present = await this.attestationKeyPublic()
    if (present !== undefined) {
      if (expectedPem !== undefined && samePublicKey(present, expectedPem)) return {handle: this.akHandle, publicPem: present, created: false}
      throw new UserError(`the persistent handle ${this.akHandle} holds a key this host did not record as its attestation key`, {
        code: 'ak_handle_in_use',
        exit: ExitCode.refused,
        suggestion: `set [attestation] ak_handle to a free handle (tpm2_getcap handles-persistent lists the used ones), or, if it is an old Outpost AK, evict it: tpm2_evictcontrol -C o -c ${this.akHandle}`,
      })
    }
    return this.withDir(async (dir) => {
      await this.tools.run('tpm2_createek', ['-c', 'ek.ctx', '-G', 'rsa', '-u', 'ek.pub'], dir)
      await this.tools.run('tpm2_createak', ['-C', 'ek.ctx', '-c', 'ak.ctx', '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', 'ak.pem', '-f', 'pem'], dir)
      await this.tools.run('tpm2_evictcontrol', ['-C', 'o', '-c', 'ak.ctx', this.akHandle], dir)
      const publicPem = await readFile(join(dir, 'ak.pem'), 'utf8')
      attestationKey(publicPem)
      return {handle: this.akHandle, publicPem, created: true}
    })
  }

  /** The EK certificate the manufacturer stored in NV (RSA, else ECC), as PEM; undefined when the TPM has none. */
  async endorsementCertificate(): Promise<EndorsementCertificate | undefined> {
    const indices = HandleList.parse(await this.tools.run('tpm2_getcap', ['handles-nv-index'], tmpdir()))
    for (const [type, index] of Object.entries(EK_CERTIFICATE_INDICES) as [keyof typeof EK_CERTIFICATE_INDICES, number][]) {
      if (!indices.includes(index)) continue
      return this.withDir(async (dir) => {
        await this.tools.run('tpm2_nvread', ['-C', 'o', '-o', 'cert.der', HEX(index)], dir)
        await this.tools.run('tpm2_createek', ['-c', 'ek.ctx', '-G', type, '-u', 'ek.pem', '-f', 'pem'], dir)
        const der = await readFile(join(dir, 'cert.der'))
        let certificate: X509Certificate
        try {
          certificate = new X509Certificate(trimDer(der))
        } catch (error) {
          throw new TpmCommandError(`NV index ${HEX(index)} does not hold an X.509 certificate: ${(error as Error).message}`, undefined)
        }
        const matchesEk = samePublicKey(certificate.publicKey.export({type: 'spki', format: 'pem'}).toString(), await readFile(join(dir, 'ek.pem'), 'utf8'))
        return {pem: certificate.toString(), index, subject: certificate.subject, issuer: certificate.issuer, matchesEk}
      })
    }
    return undefined
  }

  /** TPM2_Quote by the AK over `selection` with `qualifyingData` as extraData, checked against `akPublicPem`. */
  async quote(qualifyingData: Uint8Array, selection: string, akPublicPem: string): Promise<TpmQuote> {
    const pcrSelection = parsePcrSelection(selection)
    const {quote, signature} = await this.withDir(async (dir) => {
      await this.tools.run('tpm2_quote', ['-c', this.akHandle, '-l', formatPcrSelection(pcrSelection), '-q', Buffer.from(qualifyingData).toString('hex'), '-g', 'sha256', '-m', 'quote.msg', '-s', 'quote.sig'], dir)
      return {quote: await readFile(join(dir, 'quote.msg')), signature: await readFile(join(dir, 'quote.sig'))}
    })
    try {
      const attest = verifyQuote({quote, signature, akPublicPem, extraData: qualifyingData, pcrSelection})
      return {quote, signature, pcrSelection, pcrDigest: attest.pcrDigest}
    } catch (error) {
      if (!(error instanceof QuoteError)) throw error
      throw new UserError(`the TPM's quote does not verify (${error.reason}: ${error.message})`, {
        code: 'bad_attestation',
        exit: ExitCode.failed,
        suggestion: `the key at ${this.akHandle} is not the enrolled AK: run \`outpost attest status\`, then \`outpost attest enroll\``,
      })
    }
  }

  /** The PCR digest a quote over `selection` carries now (a quote with a random nonce, as the TPM computes it). */
  async currentPcrDigest(selection: string, akPublicPem: string): Promise<Buffer> {
    return (await this.quote(randomBytes(32), selection, akPublicPem)).pcrDigest
  }

  /** The values of the selected PCRs, per bank in selection order, hex. */
  async pcrValues(selection: string): Promise<Record<string, Record<number, string>>> {
    const pcrSelection = parsePcrSelection(selection)
    const raw = await this.withDir(async (dir) => {
      await this.tools.run('tpm2_pcrread', [formatPcrSelection(pcrSelection), '-o', 'pcrs.bin'], dir)
      return readFile(join(dir, 'pcrs.bin'))
    })
    const sizes = {sha1: 20, sha256: 32, sha384: 48, sha512: 64}
    const expected = pcrSelection.reduce((total, bank) => total + bank.pcrs.length * sizes[bank.bank], 0)
    if (raw.length !== expected) throw new TpmCommandError(`tpm2_pcrread wrote ${raw.length} bytes for ${selection}, not ${expected}`, undefined)
    const values: Record<string, Record<number, string>> = {}
    let offset = 0
    for (const bank of pcrSelection) {
      const entries: Record<number, string> = {}
      for (const pcr of bank.pcrs) {
        entries[pcr] = raw.subarray(offset, offset + sizes[bank.bank]).toString('hex')
        offset += sizes[bank.bank]
      }
      values[bank.bank] = entries
    }
    return values
  }
}

function samePublicKey(a: string, b: string): boolean {
  try {
    return createPublicKey(a).export({type: 'spki', format: 'der'}).equals(createPublicKey(b).export({type: 'spki', format: 'der'}))
  } catch {
    return false
  }
}

/** An NV index may be larger than its certificate (padding after the DER): keep the outer SEQUENCE's bytes only. */
function trimDer(bytes: Buffer): Buffer {
  if (bytes.length < 4 || bytes[0] !== 0x30) return bytes
  const first = bytes[1] ?? 0
  if (first < 0x80) return bytes.subarray(0, 2 + first)
  const lengthBytes = first & 0x7f
  if (lengthBytes === 0 || lengthBytes > 4 || bytes.length < 2 + lengthBytes) return bytes
  let length = 0
  for (let index = 0; index < lengthBytes; index++) length = length * 256 + (bytes[2 + index] ?? 0)
  return bytes.subarray(0, Math.min(bytes.length, 2 + lengthBytes + length))
}
