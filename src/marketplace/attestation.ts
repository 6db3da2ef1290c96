import type {z} from 'zod'

import {sha256Hex, resultAttestationData, type SignedResultEnvelope} from '../core/signing.js'
import {attestationKey, formatPcrSelection, parsePcrSelection, QuoteError, verifyQuote} from '../core/tpm-quote.js'
import type {MarketplaceContext} from './context.js'
import {HttpError, invalidBody, notFound} from './http-error.js'
import type {AttestationKeyBody} from './job-schemas.js'

interface AttestationKeyRow {
  agent_pubkey: string
  provider_pubkey: string
  type: string
  ak_public_pem: string
  ek_certificate_pem: string | null
  pcr_selection: string
  expected_pcr_digest: string | null
  created_at: number
}

export interface AttestationKeyView {
  agent_pubkey: string
  type: string
  ak_public_pem: string
  ek_certificate_pem: string | null
  pcr_selection: string
  expected_pcr_digest: string | null
  created_at: number
}

function keyView(row: AttestationKeyRow): AttestationKeyView {
  return {
    agent_pubkey: row.agent_pubkey,
    type: row.type,
    ak_public_pem: row.ak_public_pem,
    ek_certificate_pem: row.ek_certificate_pem,
    pcr_selection: row.pcr_selection,
    expected_pcr_digest: row.expected_pcr_digest,
    created_at: row.created_at,
  }
}

/**
 * §14: attestation keys enrolled per agent key, and the check of a result's TPM2_Quote against them. A quote is
 * accepted once: the digest of every quote that passed is kept, and the same quote under another lease is a replay.
 */
export class AttestationBook {
  private readonly statements

  constructor(private readonly context: MarketplaceContext) {
    const {db} = context
    this.statements = {
      key: db.prepare<[string], AttestationKeyRow>('SELECT * FROM attestation_keys WHERE agent_pubkey = ?'),
      keys: db.prepare<[string], AttestationKeyRow>('SELECT * FROM attestation_keys WHERE provider_pubkey = ? ORDER BY created_at, agent_pubkey'),
      upsert: db.prepare(
        `INSERT INTO attestation_keys (agent_pubkey, provider_pubkey, type, ak_public_pem, ek_certificate_pem, pcr_selection, expected_pcr_digest, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (agent_pubkey) DO UPDATE SET type = excluded.type, ak_public_pem = excluded.ak_public_pem,
           ek_certificate_pem = excluded.ek_certificate_pem, pcr_selection = excluded.pcr_selection,
           expected_pcr_digest = excluded.expected_pcr_digest, created_at = excluded.created_at`,
      ),
      remove: db.prepare('DELETE FROM attestation_keys WHERE agent_pubkey = ? AND provider_pubkey = ?'),
      delegation: db.prepare<[string], {provider_pubkey: string; revoked_at: number | null}>('SELECT provider_pubkey, revoked_at FROM delegations WHERE agent_pubkey = ?'),
      quoteUse: db.prepare<[string], string>('SELECT lease_id FROM used_quotes WHERE quote_digest = ?').pluck(),
      useQuote: db.prepare('INSERT OR IGNORE INTO used_quotes (quote_digest, lease_id, used_at) VALUES (?, ?, ?)'),
    }
  }

  /** Enrolls (or replaces) the AK of one of this provider's live agent keys. */
  enroll(providerPubkey: string, body: z.infer<typeof AttestationKeyBody>): AttestationKeyView {
    const delegation = this.statements.delegation.get(body.agent_pubkey)
    if (!delegation || delegation.provider_pubkey !== providerPubkey || delegation.revoked_at !== null) {
      throw invalidBody([{field: 'agent_pubkey', message: 'not a live agent key of this provider'}])
    }
    let selection: string
    try {
      attestationKey(body.ak_public_pem)
      selection = formatPcrSelection(parsePcrSelection(body.pcr_selection))
    } catch (error) {
      if (!(error instanceof QuoteError)) throw error
      throw invalidBody([{field: error.reason === 'unsupported_key' ? 'ak_public_pem' : 'pcr_selection', message: error.message}])
    }
    this.statements.upsert.run(
      body.agent_pubkey,
      providerPubkey,
      body.type,
      body.ak_public_pem,
      body.ek_certificate_pem ?? null,
      selection,
      body.expected_pcr_digest ?? null,
      this.context.clock.now(),
    )
    const row = this.statements.key.get(body.agent_pubkey)
    if (!row) throw new Error('the attestation key just written is missing')
    return keyView(row)
  }

  list(providerPubkey: string): {keys: AttestationKeyView[]} {
    return {keys: this.statements.keys.all(providerPubkey).map(keyView)}
  }

  remove(providerPubkey: string, agentPubkey: string): void {
    if (this.statements.remove.run(agentPubkey, providerPubkey).changes === 0) throw notFound('attestation key')
  }

  /** Whether this agent key has an enrolled AK. */
  enrolled(agentPubkey: string): boolean {
    return this.statements.key.get(agentPubkey) !== undefined
  }

  /**
   * Checks the envelope's attestation against the AK enrolled for its signer; returns why it fails, or undefined
   * when it holds (and then remembers the quote, so it is never accepted again).
   */
  check(envelope: SignedResultEnvelope, leaseId: string): string | undefined {
    const attestation = envelope.attestation
    if (!attestation) return 'the job requires an attested result and the envelope has no attestation'
    const key = this.statements.key.get(envelope.signer)
    if (!key) return 'no attestation key is enrolled for the signing agent key'
    const quote = Buffer.from(attestation.quote_b64, 'base64')
    const quoteDigest = sha256Hex(quote)
    const usedBy = this.statements.quoteUse.get(quoteDigest)
    if (usedBy !== undefined && usedBy !== leaseId) return 'this quote was already used for another result (a replay)'
    try {
      verifyQuote({
        quote,
        signature: Buffer.from(attestation.signature_b64, 'base64'),
        akPublicPem: key.ak_public_pem,
        extraData: resultAttestationData(envelope),
        pcrSelection: parsePcrSelection(key.pcr_selection),
        claimedPcrDigest: Buffer.from(attestation.pcr_digest, 'hex'),
        ...(key.expected_pcr_digest ? {expectedPcrDigest: Buffer.from(key.expected_pcr_digest, 'hex')} : {}),
      })
    } catch (error) {
      if (error instanceof QuoteError) return `${error.reason}: ${error.message}`
      throw error
    }
    this.statements.useQuote.run(quoteDigest, leaseId, this.context.clock.now())
    return undefined
  }
}

export const attestationRequired = () => new HttpError(409, 'attestation_required', 'this job requires attestation: enroll a TPM attestation key for this agent key first (§14)')
