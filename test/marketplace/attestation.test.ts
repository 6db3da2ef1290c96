import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {toHex} from '../../src/core/hex.js'
import {generateKeyPair, resultAttestationData, sha256Hex, signResultEnvelope, type KeyPair, type SignedResultEnvelope} from '../../src/core/signing.js'
import {parseQuoteAttest} from '../../src/core/tpm-quote.js'
import {Swtpm, swtpmAvailability, type AttestationKey} from '../support/swtpm.js'
import {errorOf, send, type Provider} from '../support/harness.js'
import {createJob, GHZ_3, jobBody, jobProvider, lease, openJobIds, simulate, submit, uploadProgram, type LeaseAnswer} from './job-fixtures.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/**
 * PROTOCOL §14 on the reference marketplace, with real TPM 2.0 quotes from a software TPM: enrolment, offers of jobs
 * that require attestation, and each way a quote can fail to bind a result to the enrolled machine.
 */

const SELECTION = 'sha256:0,1,2,3,4,5,6,7'
const availability = swtpmAvailability()

describe.skipIf(!availability.available)(`§14 attestation with swtpm${availability.available ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let market: Devnet
  let digest: string
  let tpm: Swtpm
  let otherTpm: Swtpm
  let ak: AttestationKey

  beforeAll(async () => {
    market = await startDevnet()
    digest = await uploadProgram(market, generateKeyPair(), Buffer.from(GHZ_3))
    tpm = await Swtpm.start()
    otherTpm = await Swtpm.start()
    ak = await tpm.createAk('ecc')
  })
  afterAll(async () => {
    await market?.stop()
    await tpm?.stop()
    await otherTpm?.stop()
  })

  const enroll = (provider: Provider, key: AttestationKey, extra: Record<string, unknown> = {}) =>
    send(market, 'POST', `/providers/${provider.pk}/attestation-keys`, {
      key: provider.main,
      body: {agent_pubkey: toHex(provider.agent.publicKey), type: 'tpm2', ak_public_pem: key.pem, pcr_selection: SELECTION, ...extra},
    })

  const attestedJob = async () => createJob(market, generateKeyPair(), jobBody('quantum_circuit', digest, '{"shots": 64, "seed": 1}', {requires_attestation: true}))
  const output = () => Buffer.from(JSON.stringify(simulate(GHZ_3, 64)))

  /** What the agent does: the envelope with its signer, a quote over its digest, then the signature over it all. */
  async function attestedEnvelope(leased: LeaseAnswer, agent: KeyPair, options: {quoteBy?: {tpm: Swtpm; ak: AttestationKey}; quoteOver?: Buffer} = {}): Promise<SignedResultEnvelope> {
    const data = output()
    const fields = {
      job_id: leased.job_id,
      lease_id: leased.lease_id,
      program_digest: leased.job.program.digest,
      input_digest: leased.job.input.digest,
      output: {digest: sha256Hex(data), size_bytes: data.length, data_b64: data.toString('base64')},
      started_at: leased.leased_at,
      finished_at: leased.leased_at + 10,
      signer: toHex(agent.publicKey),
    }
    const by = options.quoteBy ?? {tpm, ak}
    const quote = await by.tpm.quote(by.ak, options.quoteOver ?? resultAttestationData(fields), SELECTION)
    const attestation = {
      type: 'tpm2-quote' as const,
      quote_b64: quote.quote.toString('base64'),
      signature_b64: quote.signature.toString('base64'),
      pcr_digest: parseQuoteAttest(quote.quote).pcrDigest.toString('hex'),
    }
    const {signer: _signer, ...unsigned} = fields
    return signResultEnvelope(agent, {...unsigned, attestation})
  }

  it('enrolls an AK for an agent key (main key only), lists it publicly, refuses what it can\'t use', async () => {
    const provider = await jobProvider(market)
    const enrolled = await enroll(provider, ak)
    expect(enrolled.status).toBe(201)
    expect(enrolled.body).toMatchObject({agent_pubkey: toHex(provider.agent.publicKey), type: 'tpm2', pcr_selection: SELECTION, expected_pcr_digest: null})
    const listed = await send<{keys: {agent_pubkey: string}[]}>(market, 'GET', `/providers/${provider.pk}/attestation-keys`)
    expect(listed.body.keys.map((key) => key.agent_pubkey)).toEqual([toHex(provider.agent.publicKey)])
    expect(errorOf(await send(market, 'POST', `/providers/${provider.pk}/attestation-keys`, {key: provider.agent, body: {}}))).toEqual({status: 403, code: 'permission_denied'})
    for (const [extra, field] of [
      [{ak_public_pem: 'not a key'}, 'ak_public_pem'],
      [{pcr_selection: 'sha256:0,99'}, 'pcr_selection'],
      [{agent_pubkey: toHex(generateKeyPair().publicKey)}, 'agent_pubkey'],
    ] as const) {
      const answer = await enroll(provider, ak, extra)
      expect(errorOf(answer), field).toEqual({status: 400, code: 'invalid_body'})
      expect(JSON.stringify(answer.body), field).toContain(field)
    }
    expect((await send(market, 'DELETE', `/providers/${provider.pk}/attestation-keys/${toHex(provider.agent.publicKey)}`, {key: provider.main})).status).toBe(204)
    expect(errorOf(await send(market, 'DELETE', `/providers/${provider.pk}/attestation-keys/${toHex(provider.agent.publicKey)}`, {key: provider.main}))).toEqual({status: 404, code: 'not_found'})
  })

  it('offers a job requiring attestation only to an enrolled agent key', async () => {
    const [enrolled, bare] = [await jobProvider(market), await jobProvider(market)]
    expect((await enroll(enrolled, ak)).status).toBe(201)
    const job = await attestedJob()
    expect(await openJobIds(market, enrolled)).toContain(job.job_id)
    expect(await openJobIds(market, bare)).not.toContain(job.job_id)
    expect(errorOf(await send(market, 'POST', `/providers/${bare.pk}/jobs/${job.job_id}/lease`, {key: bare.agent, body: {}}))).toEqual({status: 409, code: 'attestation_required'})
  })

  it('accepts a result whose quote binds the envelope; rejects a replayed quote, one over another envelope, one by another TPM', async () => {
    const provider = await jobProvider(market)
    expect((await enroll(provider, ak)).status).toBe(201)
    const first = await lease(market, provider, (await attestedJob()).job_id)
    const good = await attestedEnvelope(first, provider.agent)
    expect((await submit(market, provider, first.lease_id, good)).body).toMatchObject({verdict: 'accepted'})

    // The same quote under another lease: its extraData binds the first envelope, and it was used already.
    const second = await lease(market, provider, (await attestedJob()).job_id)
    const {signature: _s, signer: _r, ...replayedFields} = {...(await attestedEnvelope(second, provider.agent)), attestation: good.attestation}
    const replayed = signResultEnvelope(provider.agent, replayedFields)
    expect((await submit(market, provider, second.lease_id, replayed)).body).toMatchObject({verdict: 'rejected', reason: 'bad_attestation', detail: expect.stringContaining('replay')})

    const third = await lease(market, provider, (await attestedJob()).job_id)
    const overAnother = await attestedEnvelope(third, provider.agent, {quoteOver: Buffer.from(sha256Hex('another envelope'), 'hex')})
    expect((await submit(market, provider, third.lease_id, overAnother)).body).toMatchObject({verdict: 'rejected', reason: 'bad_attestation', detail: expect.stringContaining('extra_data_mismatch')})

    const fourth = await lease(market, provider, (await attestedJob()).job_id)
    const otherAk = await otherTpm.createAk('ecc')
    const byOtherTpm = await attestedEnvelope(fourth, provider.agent, {quoteBy: {tpm: otherTpm, ak: otherAk}})
    expect((await submit(market, provider, fourth.lease_id, byOtherTpm)).body).toMatchObject({verdict: 'rejected', reason: 'bad_attestation', detail: expect.stringContaining('bad_signature')})

    const fifth = await lease(market, provider, (await attestedJob()).job_id)
    const data = output()
    const unattested = signResultEnvelope(provider.agent, {
      job_id: fifth.job_id,
      lease_id: fifth.lease_id,
      program_digest: fifth.job.program.digest,
      input_digest: fifth.job.input.digest,
      output: {digest: sha256Hex(data), size_bytes: data.length, data_b64: data.toString('base64')},
      started_at: fifth.leased_at,
      finished_at: fifth.leased_at,
    })
    expect((await submit(market, provider, fifth.lease_id, unattested)).body).toMatchObject({verdict: 'rejected', reason: 'bad_attestation'})
  })

  it('with a pinned PCR digest, a quote after a PCR was extended is rejected', async () => {
    const provider = await jobProvider(market)
    const pinnedTpm = await Swtpm.start()
    try {
      const pinnedAk = await pinnedTpm.createAk('rsa')
      const probe = await pinnedTpm.quote(pinnedAk, Buffer.alloc(32), SELECTION)
      const pinned = parseQuoteAttest(probe.quote).pcrDigest.toString('hex')
      expect((await enroll(provider, pinnedAk, {expected_pcr_digest: pinned})).status).toBe(201)
      const before = await lease(market, provider, (await attestedJob()).job_id)
      expect((await submit(market, provider, before.lease_id, await attestedEnvelope(before, provider.agent, {quoteBy: {tpm: pinnedTpm, ak: pinnedAk}}))).body.verdict).toBe('accepted')
      await pinnedTpm.extendPcr(7, sha256Hex('a changed boot'))
      const after = await lease(market, provider, (await attestedJob()).job_id)
      const verdict = await submit(market, provider, after.lease_id, await attestedEnvelope(after, provider.agent, {quoteBy: {tpm: pinnedTpm, ak: pinnedAk}}))
      expect(verdict.body).toMatchObject({verdict: 'rejected', reason: 'bad_attestation', detail: expect.stringContaining('unexpected_pcr_digest')})
    } finally {
      await pinnedTpm.stop()
    }
  })
})
