import {createHash} from 'node:crypto'
import {describe, expect, it} from 'vitest'

import {bidCommitment, bidCommitmentText, newBidSalt} from '../../src/core/auction.js'
import {fromHex, toHex} from '../../src/core/hex.js'
import {
  keyPairFromSeed,
  resultAttestationData,
  resultEnvelopeMessage,
  signResultEnvelope,
  verifyHex,
  verifyResultEnvelope,
} from '../../src/core/signing.js'

/** PROTOCOL §12 result envelopes and §13 bid commitments, written out by hand from the protocol's text. */

const agent = keyPairFromSeed(fromHex('11'.repeat(32), 32, 'seed'))
const FIELDS = {
  job_id: 'aa'.repeat(16),
  lease_id: 'bb'.repeat(16),
  program_digest: 'cc'.repeat(32),
  input_digest: 'dd'.repeat(32),
  output: {size_bytes: 2, digest: 'ee'.repeat(32), data_b64: 'b2s='},
  started_at: 1000,
  finished_at: 2000,
}

describe('§12 result envelope', () => {
  it('signs outpost-result-v1 and the canonical JSON (keys sorted, no spaces) of every field but the signature', () => {
    const signed = signResultEnvelope(agent, FIELDS)
    const expected =
      'outpost-result-v1\n' +
      `{"finished_at":2000,"input_digest":"${'dd'.repeat(32)}","job_id":"${'aa'.repeat(16)}","lease_id":"${'bb'.repeat(16)}",` +
      `"output":{"data_b64":"b2s=","digest":"${'ee'.repeat(32)}","size_bytes":2},"program_digest":"${'cc'.repeat(32)}",` +
      `"signer":"${toHex(agent.publicKey)}","started_at":1000}`
    expect(resultEnvelopeMessage(signed)).toBe(expected)
    expect(verifyHex(expected, signed.signature, toHex(agent.publicKey))).toBe(true)
    expect(verifyResultEnvelope(signed)).toBe(true)
  })

  it('a changed field, another signer or a re-ordered copy: only the last still verifies', () => {
    const signed = signResultEnvelope(agent, FIELDS)
    expect(verifyResultEnvelope({...signed, finished_at: 2001})).toBe(false)
    expect(verifyResultEnvelope({...signed, output: {...signed.output, digest: 'ef'.repeat(32)}})).toBe(false)
    expect(verifyResultEnvelope({...signed, signer: toHex(keyPairFromSeed(fromHex('22'.repeat(32), 32, 'seed')).publicKey)})).toBe(false)
    const reordered = Object.fromEntries(Object.entries(signed).reverse()) as typeof signed
    expect(verifyResultEnvelope(reordered)).toBe(true)
  })

  it('the attestation binds the sha256 of the canonical JSON without attestation and signature (§14)', () => {
    const withSigner = {...FIELDS, signer: toHex(agent.publicKey)}
    const data = resultAttestationData(withSigner)
    const canonical = resultEnvelopeMessage(withSigner).slice('outpost-result-v1\n'.length)
    expect(data.toString('hex')).toBe(createHash('sha256').update(canonical).digest('hex'))
    const attestation = {type: 'tpm2-quote' as const, quote_b64: 'cXVvdGU=', signature_b64: 'c2ln', pcr_digest: 'ab'.repeat(32)}
    const signed = signResultEnvelope(agent, {...FIELDS, attestation})
    expect(resultAttestationData(signed).equals(data)).toBe(true)
    expect(resultEnvelopeMessage(signed)).toContain('"attestation":{"pcr_digest"')
  })
})

describe('§13 bid commitment', () => {
  it('is the sha256 hex of outpost-bid-v1, the job, the provider, the fee as written and the salt, one per line', () => {
    const salt = '5a'.repeat(32)
    const text = ['outpost-bid-v1', 'aa'.repeat(16), 'bb'.repeat(32), '12.5', salt].join('\n')
    expect(bidCommitmentText('aa'.repeat(16), 'bb'.repeat(32), '12.5', salt)).toBe(text)
    expect(bidCommitment('aa'.repeat(16), 'bb'.repeat(32), '12.5', salt)).toBe(createHash('sha256').update(text).digest('hex'))
    expect(bidCommitment('aa'.repeat(16), 'bb'.repeat(32), '12.50', salt)).not.toBe(bidCommitment('aa'.repeat(16), 'bb'.repeat(32), '12.5', salt))
    expect(newBidSalt()).toMatch(/^[0-9a-f]{64}$/)
    expect(newBidSalt()).not.toBe(newBidSalt())
  })
})
