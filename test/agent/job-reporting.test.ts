import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {Journal, journalPath, journalState, readJournal} from '../../src/agent/journal.js'
import {Outbox} from '../../src/agent/outbox.js'
import {Reporter, type Confirmation, type Settlement, type SubmitResult} from '../../src/agent/reporter.js'
import {buildResultEnvelope, MAX_INLINE_OUTPUT_BYTES} from '../../src/agent/result-envelope.js'
import type {Job, Lease, Verdict} from '../../src/core/api/job-schemas.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair, sha256Hex, verifyResultEnvelope, type SignedResultEnvelope} from '../../src/core/signing.js'
import {FakeMarketplace, RecordingLog, refusal, tempStateDir, unreadable} from './fakes.js'

/** The job loop's durable pieces: the envelope it signs, the journal of its leases, and results through the outbox. */

vi.mock('node:timers/promises', () => import('./fake-sleep.js'))

const JOB = 'ab'.repeat(16)
const LEASE = 'cd'.repeat(16)
const key = generateKeyPair()

let state: ReturnType<typeof tempStateDir>
beforeEach(() => {
  vi.useFakeTimers()
  state = tempStateDir()
})
afterEach(() => {
  vi.useRealTimers()
  state.remove()
})

const job: Job = {
  job_id: JOB,
  kind: 'quantum_circuit',
  program: {digest: 'ee'.repeat(32), size_bytes: 10},
  input: {digest: 'ff'.repeat(32), size_bytes: 20},
  resources: {cpu_cores: 1, memory_mb: 256},
  reward: {mode: 'fixed', amount: '1.5'},
  collateral: '2',
  deadline: 2_000_000,
  lease_seconds: 60,
  attempts_left: 3,
  requires_attestation: false,
  created_at: 1_000_000,
  status: 'leased',
}
const lease: Lease = {lease_id: LEASE, job_id: JOB, agent_pubkey: toHex(key.publicKey), status: 'active', leased_at: 1_000_100, expires_at: 1_060_100, deadline: 2_000_000}

function envelope(output = Buffer.from('{"counts":{"000":256}}')): Promise<SignedResultEnvelope> {
  return buildResultEnvelope(key, {jobId: JOB, leaseId: LEASE, programDigest: job.program.digest, inputDigest: job.input.digest, output, startedAt: 1_000_200, finishedAt: 1_000_300})
}

async function settled(promise: Promise<Settlement>): Promise<Settlement> {
  let result: Settlement | undefined
  void promise.then((settlement) => (result = settlement))
  for (let step = 0; step < 1000 && !result; step++) await vi.advanceTimersByTimeAsync(100)
  if (!result) throw new Error('the result was never settled')
  return result
}

function reporter(submitResult: SubmitResult, confirm: () => Promise<Confirmation> = async () => 'unknown') {
  return new Reporter({
    outbox: new Outbox(state.dir),
    api: new FakeMarketplace(),
    journal: new Journal(journalPath(state.dir)),
    log: new RecordingLog(),
    onApiError: () => undefined,
    onDepth: () => undefined,
    confirm,
    submitResult,
  })
}

describe('the result envelope', () => {
  it('is signed by the agent key over all its fields, with a small output inline and a large one by digest only', async () => {
    const small = await envelope()
    expect(verifyResultEnvelope(small)).toBe(true)
    expect(small).toMatchObject({signer: toHex(key.publicKey), output: {digest: sha256Hex(Buffer.from('{"counts":{"000":256}}')), data_b64: Buffer.from('{"counts":{"000":256}}').toString('base64')}})
    expect(verifyResultEnvelope({...small, finished_at: small.finished_at + 1})).toBe(false)
    const large = await envelope(Buffer.alloc(MAX_INLINE_OUTPUT_BYTES + 1, 1))
    expect(large.output).toEqual({digest: sha256Hex(Buffer.alloc(MAX_INLINE_OUTPUT_BYTES + 1, 1)), size_bytes: MAX_INLINE_OUTPUT_BYTES + 1})
  })

  it('carries an attestation when an attester gives one, inside what is signed', async () => {
    const attestation = {type: 'tpm2-quote' as const, quote_b64: 'cQ==', signature_b64: 'cw==', pcr_digest: '00'.repeat(32)}
    const attested = await buildResultEnvelope(key, {jobId: JOB, leaseId: LEASE, programDigest: job.program.digest, inputDigest: job.input.digest, output: Buffer.from('x'), startedAt: 1, finishedAt: 2}, async (fields) => {
      expect(fields.signer).toBe(toHex(key.publicKey))
      return attestation
    })
    expect(attested.attestation).toEqual(attestation)
    expect(verifyResultEnvelope(attested)).toBe(true)
    expect(verifyResultEnvelope({...attested, attestation: {...attestation, pcr_digest: '11'.repeat(32)}})).toBe(false)
  })
})

describe('the journal of leases', () => {
  it('keeps a lease, then its signed result, until the lease is done', async () => {
    const journal = new Journal(journalPath(state.dir))
    const signed = await envelope()
    journal.append({event: 'lease_taken', lease_id: LEASE, lease, job})
    expect(journalState(readJournal(journalPath(state.dir)).entries).leases.get(LEASE)).toEqual({lease, job})
    journal.append({event: 'result_signed', lease_id: LEASE, envelope: signed})
    expect(journalState(readJournal(journalPath(state.dir)).entries).leases.get(LEASE)).toEqual({lease, job, envelope: signed})
    journal.append({event: 'lease_done', lease_id: LEASE, job_id: JOB, outcome: 'accepted', reward: '1.5'})
    expect(journalState(readJournal(journalPath(state.dir)).entries).leases.size).toBe(0)
    journal.close()
  })
})

describe('results through the outbox', () => {
  it('hands the verdict to the sender, and takes an answer that could not be read for no verdict: the same envelope is posted again', async () => {
    const signed = await envelope()
    const posted: SignedResultEnvelope[] = []
    const verdict: Verdict = {verdict: 'accepted', reward: '1.5'}
    const outcomes = [unreadable(), verdict]
    const sending = reporter(async (_leaseId, body) => {
      posted.push(body)
      const next = outcomes.shift()
      if (next instanceof Error) throw next
      return next as Verdict
    })
    expect(await settled(sending.send({kind: 'result', lease_id: LEASE, job_id: JOB, envelope: signed}))).toEqual({delivered: true, verdict})
    expect(posted).toEqual([signed, signed])
    expect(new Outbox(state.dir).depth()).toBe(0)
  })

  it('gives a result a previous run left in the outbox to the loop that waits for its verdict', async () => {
    const signed = await envelope()
    new Outbox(state.dir).add({kind: 'result', lease_id: LEASE, job_id: JOB, envelope: signed})
    let answer: (verdict: Verdict) => void = () => undefined
    const restarted = reporter(() => new Promise((resolve) => (answer = resolve)))
    expect(restarted.replay()).toBe(1)
    const waiting = restarted.settlementOf((report) => report.kind === 'result' && report.lease_id === LEASE)
    expect(waiting).toBeDefined()
    expect(restarted.settlementOf((report) => report.kind === 'result' && report.lease_id === JOB)).toBeUndefined()
    await vi.advanceTimersByTimeAsync(0)
    answer({verdict: 'rejected', reason: 'trap_failed'})
    expect(await settled(waiting as Promise<Settlement>)).toEqual({delivered: true, verdict: {verdict: 'rejected', reason: 'trap_failed'}})
  })

  it('drops a result the marketplace refuses whose lease shows no verdict, and says why', async () => {
    const signed = await envelope()
    const refused = reporter(async () => {
      throw refusal(410, 'lease_expired')
    }, async () => 'not_in_effect')
    expect(await settled(refused.send({kind: 'result', lease_id: LEASE, job_id: JOB, envelope: signed}))).toMatchObject({delivered: false, status: 410})
  })
})
