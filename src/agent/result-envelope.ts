import {toHex} from '../core/hex.js'
import {signResultEnvelope, sha256Hex, type KeyPair, type ResultAttestation, type ResultEnvelopeFields, type SignedResultEnvelope} from '../core/signing.js'

/** §12: outputs up to this size travel inside the envelope (`data_b64`); larger ones are uploaded first. */
export const MAX_INLINE_OUTPUT_BYTES = 512 * 1024

/** What a lease's result says, before it is signed. */
export interface ResultFacts {
  jobId: string
  leaseId: string
  programDigest: string
  inputDigest: string
  output: Buffer
  startedAt: number
  finishedAt: number
}

/** The envelope's fields but the attestation and the signature: what a TPM quote binds (§14). */
export type UnsignedResult = Omit<ResultEnvelopeFields, 'signer' | 'attestation'>

/**
 * Adds an attestation to a result before it is signed (§14); undefined: none. The attestation's qualifying data is
 * `resultAttestationData` of the envelope, so the attester is given the fields and the signer.
 */
export type ResultAttester = (fields: UnsignedResult & {signer: string}) => Promise<ResultAttestation | undefined>

/**
 * The one place a result envelope is built and signed (§12): the output named by digest and size, inline when it
 * is small enough, and an attestation when an attester is given.
 */
export async function buildResultEnvelope(key: KeyPair, facts: ResultFacts, attest?: ResultAttester): Promise<SignedResultEnvelope> {
  const inline = facts.output.length <= MAX_INLINE_OUTPUT_BYTES
  const fields: UnsignedResult = {
    job_id: facts.jobId,
    lease_id: facts.leaseId,
    program_digest: facts.programDigest,
    input_digest: facts.inputDigest,
    output: {digest: sha256Hex(facts.output), size_bytes: facts.output.length, ...(inline ? {data_b64: facts.output.toString('base64')} : {})},
    started_at: facts.startedAt,
    finished_at: facts.finishedAt,
  }
  const attestation = attest ? await attest({...fields, signer: toHex(key.publicKey)}) : undefined
  return signResultEnvelope(key, {...fields, ...(attestation ? {attestation} : {})})
}
