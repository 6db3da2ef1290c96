import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {z} from 'zod'

import {enrollAttestationKey, listAttestationKeys} from '../core/api/attestation.js'
import {configuredClient} from '../core/api/factory.js'
import type {ProviderSession} from '../core/api/session.js'
import type {LoadedConfig} from '../core/config/load.js'
import type {AttestationConfig} from '../core/config/schema.js'
import {describeError, ExitCode, UserError} from '../core/errors.js'
import {writeFileAtomic} from '../core/files.js'
import {resultAttestationData, signResultEnvelope, type KeyPair, type ResultAttestation, type ResultEnvelopeFields, type SignedResultEnvelope} from '../core/signing.js'
import {toHex} from '../core/hex.js'
import {formatPcrSelection, parsePcrSelection} from '../core/tpm-quote.js'
import {Tpm, type EndorsementCertificate} from './tpm.js'
import type {TpmIdentity} from './tpm-tools.js'

/**
 * PROTOCOL §14 on the agent's side: the attestation key this host keeps in its TPM, its enrolment with the
 * marketplace (signed by the main key), and the quote that binds each job result to this machine.
 */

/** What this host recorded about its AK, in `<state_dir>/attestation/ak.json`: the key to expect at the handle. */
const AkRecord = z.strictObject({
  handle: z.string().regex(/^0x81[0-9a-fA-F]{6}$/),
  ak_public_pem: z.string().includes('BEGIN PUBLIC KEY'),
  created_at: z.number().int(),
})
type AkRecord = z.infer<typeof AkRecord>

function recordPath(loaded: LoadedConfig): string {
  return join(loaded.paths.stateDir, 'attestation', 'ak.json')
}

/** The recorded AK; undefined when none was made here. A file that doesn't parse is an error that names it. */
export function readAkRecord(loaded: LoadedConfig): AkRecord | undefined {
  const path = recordPath(loaded)
  if (!existsSync(path)) return undefined
  let parsed: z.ZodSafeParseResult<AkRecord>
  try {
    parsed = AkRecord.safeParse(JSON.parse(readFileSync(path, 'utf8')))
  } catch (error) {
    throw new UserError(`${path} is not JSON: ${describeError(error)}`, {code: 'ak_record_invalid', exit: ExitCode.config, suggestion: `remove ${path} and run \`outpost attest enroll\` again`})
  }
  if (!parsed.success) {
    throw new UserError(`${path}: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`, {
      code: 'ak_record_invalid',
      exit: ExitCode.config,
      suggestion: `remove ${path} and run \`outpost attest enroll\` again`,
    })
  }
  return parsed.data
}

function writeAkRecord(loaded: LoadedConfig, record: AkRecord): void {
  mkdirSync(join(loaded.paths.stateDir, 'attestation'), {recursive: true, mode: 0o700})
  writeFileAtomic(recordPath(loaded), JSON.stringify(record, null, 2) + '\n', 0o600)
}

export function openTpm(config: AttestationConfig): Tpm {
  return new Tpm(config.tcti, config.ak_handle)
}

export interface EnrollReport {
  agent_pubkey: string
  ak_handle: string
  /** True when enrolling made a new AK (none was recorded, or the TPM had lost it). */
  ak_created: boolean
  ak_public_pem: string
  ek_certificate: {subject: string; issuer: string; nv_index: string; matches_ek: boolean} | null
  pcr_selection: string
  expected_pcr_digest: string | null
  tpm: TpmIdentity
}

function certificateView(certificate: EndorsementCertificate | undefined): EnrollReport['ek_certificate'] {
  if (!certificate) return null
  return {subject: certificate.subject, issuer: certificate.issuer, nv_index: `0x${certificate.index.toString(16).padStart(8, '0')}`, matches_ek: certificate.matchesEk}
}

/**
 * `outpost attest enroll`: makes (or reuses) the AK, reads the EK certificate, and enrolls the AK for `agentPubkey`
 * with the main key's session; with `pinPcrs`, the PCR digest a quote carries now becomes the one every quote must.
 */
export async function enrollAttestation(loaded: LoadedConfig, session: ProviderSession, agentPubkey: string, options: {pinPcrs: boolean}): Promise<EnrollReport> {
  const config = loaded.config.attestation
  const tpm = openTpm(config)
  const identity = await tpm.identify()
  const recorded = readAkRecord(loaded)
  const ak = await tpm.ensureAttestationKey(recorded?.handle === config.ak_handle ? recorded.ak_public_pem : undefined)
  if (ak.created || !recorded) writeAkRecord(loaded, {handle: ak.handle, ak_public_pem: ak.publicPem, created_at: Date.now()})
  const certificate = await tpm.endorsementCertificate()
  const selection = formatPcrSelection(parsePcrSelection(config.pcrs))
  const expected = options.pinPcrs ? (await tpm.currentPcrDigest(selection, ak.publicPem)).toString('hex') : undefined
  await enrollAttestationKey(session.client, session.providerPubkey, {
    agent_pubkey: agentPubkey,
    type: 'tpm2',
    ak_public_pem: ak.publicPem,
    ...(certificate ? {ek_certificate_pem: certificate.pem} : {}),
    pcr_selection: selection,
    ...(expected ? {expected_pcr_digest: expected} : {}),
  })
  return {
    agent_pubkey: agentPubkey,
    ak_handle: ak.handle,
    ak_created: ak.created,
    ak_public_pem: ak.publicPem,
    ek_certificate: certificateView(certificate),
    pcr_selection: selection,
    expected_pcr_digest: expected ?? null,
    tpm: identity,
  }
}

export interface AttestationStatus {
  enabled: boolean
  tcti: string
  tpm: {answers: true; identity: TpmIdentity} | {answers: false; error: string; remedy?: string}
  ak: {handle: string; recorded: boolean; in_tpm: boolean | null; matches_record: boolean | null}
  marketplace:
    | {reachable: true; enrolled: boolean; matches_local_ak: boolean | null; pcr_selection: string | null; pinned: boolean; pcrs_match_pinned: boolean | null}
    | {reachable: false; error: string}
  /** Enrolled, the TPM answers with the enrolled AK, and (when pinned) the PCRs are as enrolled: results can be attested. */
  ready: boolean
}

function remedyOf(error: unknown): string | undefined {
  return error instanceof UserError ? error.suggestion : undefined
}

/** `outpost attest status`: what is enrolled for `agentPubkey`, and whether the TPM answers with that AK. */
export async function attestationStatus(loaded: LoadedConfig, agentPubkey: string, providerPubkey: string | undefined): Promise<AttestationStatus> {
  const config = loaded.config.attestation
  const tpm = openTpm(config)
  const recorded = readAkRecord(loaded)
  const status: AttestationStatus = {
    enabled: config.enabled,
    tcti: config.tcti,
    tpm: {answers: false, error: 'not checked'},
    ak: {handle: config.ak_handle, recorded: recorded?.handle === config.ak_handle, in_tpm: null, matches_record: null},
    marketplace: {reachable: false, error: 'the provider public key is unknown: run `outpost register`'},
    ready: false,
  }
  let akInTpm: string | undefined
  try {
    status.tpm = {answers: true, identity: await tpm.identify()}
    akInTpm = await tpm.attestationKeyPublic()
    status.ak.in_tpm = akInTpm !== undefined
    status.ak.matches_record = recorded && akInTpm ? samePem(recorded.ak_public_pem, akInTpm) : null
  } catch (error) {
    status.tpm = {answers: false, error: describeError(error), ...(remedyOf(error) ? {remedy: remedyOf(error)} : {})}
  }
  if (providerPubkey) {
    try {
      const keys = await listAttestationKeys(configuredClient(loaded, 'interactive'), providerPubkey)
      const enrolled = keys.find((key) => key.agent_pubkey === agentPubkey)
      let pcrsMatchPinned: boolean | null = null
      if (enrolled?.expected_pcr_digest && akInTpm && samePem(enrolled.ak_public_pem, akInTpm)) {
        pcrsMatchPinned = (await tpm.currentPcrDigest(enrolled.pcr_selection, akInTpm)).toString('hex') === enrolled.expected_pcr_digest
      }
      status.marketplace = {
        reachable: true,
        enrolled: enrolled !== undefined,
        matches_local_ak: enrolled && akInTpm ? samePem(enrolled.ak_public_pem, akInTpm) : null,
        pcr_selection: enrolled?.pcr_selection ?? null,
        pinned: Boolean(enrolled?.expected_pcr_digest),
        pcrs_match_pinned: pcrsMatchPinned,
      }
    } catch (error) {
      status.marketplace = {reachable: false, error: describeError(error)}
    }
  }
  const market = status.marketplace
  status.ready = status.tpm.answers && market.reachable && market.enrolled && market.matches_local_ak === true && market.pcrs_match_pinned !== false
  return status
}

function samePem(a: string, b: string): boolean {
  const body = (pem: string) => pem.replace(/-----[A-Z ]+-----|\s/g, '')
  return body(a) === body(b)
}

/**
 * What the job loop holds to attest results: the TPM and the AK this host recorded. `TpmResultAttester.open` refuses
 * when nothing was enrolled here, with the command that fixes it.
 */
export class TpmResultAttester {
  constructor(
    private readonly tpm: Tpm,
    private readonly akPublicPem: string,
    private readonly selection: string,
  ) {}

  static open(loaded: LoadedConfig): TpmResultAttester {
    const config = loaded.config.attestation
    const recorded = readAkRecord(loaded)
    if (!recorded || recorded.handle !== config.ak_handle) {
      throw new UserError(`[attestation] is enabled and no attestation key is recorded for handle ${config.ak_handle}`, {
        code: 'attestation_not_enrolled',
        exit: ExitCode.config,
        suggestion: 'run `outpost attest enroll --main-key-file FILE`, or set [attestation] enabled = false',
      })
    }
    return new TpmResultAttester(openTpm(config), recorded.ak_public_pem, formatPcrSelection(parsePcrSelection(config.pcrs)))
  }

  /** Opens the attester and checks, with a quote over a random nonce, that the TPM answers with the recorded AK. */
  static async ready(loaded: LoadedConfig): Promise<TpmResultAttester> {
    const attester = TpmResultAttester.open(loaded)
    await attester.tpm.quote(randomBytes(32), attester.selection, attester.akPublicPem)
    return attester
  }

  /** §14: a quote by the AK whose qualifying data is the sha256 of the envelope without `attestation` and `signature`. */
  async attest(envelope: ResultEnvelopeFields): Promise<ResultAttestation> {
    const quote = await this.tpm.quote(resultAttestationData(envelope), this.selection, this.akPublicPem)
    return {type: 'tpm2-quote', quote_b64: quote.quote.toString('base64'), signature_b64: quote.signature.toString('base64'), pcr_digest: quote.pcrDigest.toString('hex')}
  }
}

/**
 * The signed result envelope, attested when `attester` is given: the signer is set first (it is part of what the
 * quote binds), then the quote, then the agent key's signature over everything, the attestation included.
 */
export async function signAttestedResult(agentKey: KeyPair, attester: TpmResultAttester | undefined, envelope: Omit<ResultEnvelopeFields, 'signer' | 'attestation'>): Promise<SignedResultEnvelope> {
  if (!attester) return signResultEnvelope(agentKey, envelope)
  const attestation = await attester.attest({...envelope, signer: toHex(agentKey.publicKey)})
  return signResultEnvelope(agentKey, {...envelope, attestation})
}
