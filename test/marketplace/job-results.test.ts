import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {generateKeyPair, sha256Hex} from '../../src/core/signing.js'
import {waitFor} from '../support/marketplace.js'
import {errorOf, send, type Provider} from '../support/harness.js'
import {
  createJob,
  envelope,
  GHZ_3,
  jobBody,
  jobProvider,
  jobsApi,
  lease,
  MULTIPLIER_INPUT,
  multiplierProgram,
  openJobIds,
  proveMultiplier,
  simulate,
  stakeOf,
  stopSnarkjs,
  submit,
  uploadProgram,
  type JobAnswer,
  type LeaseAnswer,
  type ZkOutput,
} from './job-fixtures.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/** PROTOCOL §12 results: the envelope's checks, real Groth16 verification, quantum shapes, uploaded outputs, traps. */

let market: Devnet
let zkDigest: string
let ghzDigest: string
let containerDigest: string
let proof: ZkOutput

beforeAll(async () => {
  market = await startDevnet()
  const renter = generateKeyPair()
  zkDigest = await uploadProgram(market, renter, multiplierProgram())
  ghzDigest = await uploadProgram(market, renter, Buffer.from(GHZ_3))
  containerDigest = await uploadProgram(market, renter, Buffer.from(JSON.stringify({image: 'busybox', command: ['sh', '-c', 'cat /input > /output']})))
  proof = await proveMultiplier()
})
afterAll(async () => {
  await market.stop()
  await stopSnarkjs()
})

const proofBytes = (output: ZkOutput) => Buffer.from(JSON.stringify(output))

async function leasedZkJob(provider: Provider, overrides: Record<string, unknown> = {}): Promise<{job: JobAnswer; leased: LeaseAnswer}> {
  const job = await createJob(market, generateKeyPair(), jobBody('zk_proof', zkDigest, JSON.stringify(MULTIPLIER_INPUT), overrides))
  return {job, leased: await lease(market, provider, job.job_id)}
}

describe('§12 zk_proof results: Groth16 verified for real', () => {
  it('accepts a real proof; the same envelope again gets the same verdict; another one is 409', async () => {
    const provider = await jobProvider(market)
    const {leased} = await leasedZkJob(provider)
    const signed = envelope(leased, proofBytes(proof), provider.agent)
    const first = await submit(market, provider, leased.lease_id, signed)
    expect(first.status).toBe(200)
    expect(first.body).toEqual({verdict: 'accepted', reward: '2.5'})
    const again = await submit(market, provider, leased.lease_id, signed)
    expect(again.body).toEqual(first.body)
    const other = envelope(leased, proofBytes(proof), provider.agent, {finished_at: leased.leased_at + 2})
    expect(errorOf(await submit(market, provider, leased.lease_id, other))).toEqual({status: 409, code: 'already_exists'})
    expect(errorOf(await send(market, 'PUT', `/providers/${provider.pk}/leases/${leased.lease_id}/output`, {key: provider.agent, rawBody: Buffer.from('late')}))).toEqual({
      status: 409,
      code: 'already_exists',
    })
    expect((await jobsApi(market, provider).leases('accepted')).map((item) => item.lease_id)).toContain(leased.lease_id)
  })

  it('rejects a forged proof (invalid_proof), forfeits the collateral and opens the job again', async () => {
    const provider = await jobProvider(market, {stake: '100'})
    const {job, leased} = await leasedZkJob(provider, {collateral: '10'})
    const forged: ZkOutput = {...proof, proof: {...proof.proof, pi_a: [proof.proof.pi_c[0] ?? '', proof.proof.pi_c[1] ?? '', '1']}}
    const verdict = await submit(market, provider, leased.lease_id, envelope(leased, proofBytes(forged), provider.agent))
    expect(verdict.body).toMatchObject({verdict: 'rejected', reason: 'invalid_proof'})
    expect(await stakeOf(market, provider)).toMatchObject({staked: '90', locked: '0', rewards_pending: '0'})
    expect(await openJobIds(market, await jobProvider(market))).toContain(job.job_id)
  })

  it('rejects public signals the job does not expect, and output that is not a proof', async () => {
    const provider = await jobProvider(market)
    const expecting = await leasedZkJob(provider, {expect_public_signals: ['1', '3']})
    const mismatch = await submit(market, provider, expecting.leased.lease_id, envelope(expecting.leased, proofBytes(proof), provider.agent))
    expect(mismatch.body).toMatchObject({verdict: 'rejected', reason: 'public_signals_mismatch'})
    const matching = await leasedZkJob(provider, {expect_public_signals: proof.public_signals})
    expect((await submit(market, provider, matching.leased.lease_id, envelope(matching.leased, proofBytes(proof), provider.agent))).body.verdict).toBe('accepted')
    const garbage = await leasedZkJob(provider)
    const rejected = await submit(market, provider, garbage.leased.lease_id, envelope(garbage.leased, Buffer.from('{"proof": 1}'), provider.agent))
    expect(rejected.body).toMatchObject({verdict: 'rejected', reason: 'bad_output'})
  })

  it('rejects an envelope naming another program or input (digest_mismatch)', async () => {
    const provider = await jobProvider(market)
    const {leased} = await leasedZkJob(provider)
    const verdict = await submit(market, provider, leased.lease_id, envelope(leased, proofBytes(proof), provider.agent, {input_digest: sha256Hex('another input')}))
    expect(verdict.body).toMatchObject({verdict: 'rejected', reason: 'digest_mismatch'})
  })
})

describe('§12 envelopes that are refused, not judged', () => {
  it('refuses a result signed by another key (even of the same provider) and a bad signature; the lease stays active', async () => {
    const provider = await jobProvider(market)
    const {leased} = await leasedZkJob(provider)
    const stranger = generateKeyPair()
    const byStranger = await submit(market, provider, leased.lease_id, envelope(leased, proofBytes(proof), stranger))
    expect(errorOf(byStranger)).toEqual({status: 400, code: 'invalid_body'})
    expect(JSON.stringify(byStranger.body)).toContain('signer')
    const tampered = {...envelope(leased, proofBytes(proof), provider.agent), finished_at: leased.leased_at + 5}
    const badSignature = await submit(market, provider, leased.lease_id, tampered)
    expect(errorOf(badSignature)).toEqual({status: 400, code: 'invalid_body'})
    expect(JSON.stringify(badSignature.body)).toContain('signature')
    const wrongLease = envelope(leased, proofBytes(proof), provider.agent, {lease_id: 'ab'.repeat(16)})
    expect(errorOf(await submit(market, provider, leased.lease_id, wrongLease))).toEqual({status: 400, code: 'invalid_body'})
    expect((await submit(market, provider, leased.lease_id, envelope(leased, proofBytes(proof), provider.agent))).body.verdict).toBe('accepted')
  })

  it('refuses an output whose bytes do not match its digest, or that was never uploaded', async () => {
    const provider = await jobProvider(market)
    const {leased} = await leasedZkJob(provider)
    const output = proofBytes(proof)
    const lying = envelope(leased, output, provider.agent, {output: {digest: sha256Hex('other'), size_bytes: output.length, data_b64: output.toString('base64')}})
    expect(errorOf(await submit(market, provider, leased.lease_id, lying))).toEqual({status: 400, code: 'invalid_body'})
    const missing = envelope(leased, output, provider.agent, {output: {digest: sha256Hex(output), size_bytes: output.length}})
    expect(errorOf(await submit(market, provider, leased.lease_id, missing))).toEqual({status: 400, code: 'invalid_body'})
    expect(errorOf(await send(market, 'POST', `/providers/${provider.pk}/leases/${'cd'.repeat(16)}/result`, {key: provider.agent, body: missing}))).toEqual({status: 404, code: 'not_found'})
  })
})

describe('§12 container outputs: inline up to 512 KiB, uploaded above', () => {
  it('takes a 1 MiB output uploaded with PUT .../output and named by digest; refuses it inline', async () => {
    const provider = await jobProvider(market)
    const renter = generateKeyPair()
    const job = await createJob(market, renter, jobBody('container', containerDigest, Buffer.from('some input bytes')))
    const leased = await lease(market, provider, job.job_id)
    const big = Buffer.alloc(1024 * 1024, 42)
    const inline = envelope(leased, Buffer.alloc(512 * 1024 + 1, 1), provider.agent)
    expect(errorOf(await submit(market, provider, leased.lease_id, inline))).toEqual({status: 400, code: 'invalid_body'})
    const uploaded = await jobsApi(market, provider).uploadOutput(leased.lease_id, big)
    expect(uploaded).toEqual({digest: sha256Hex(big), size_bytes: big.length})
    const named = envelope(leased, big, provider.agent, {output: {digest: sha256Hex(big), size_bytes: big.length}})
    expect((await submit(market, provider, leased.lease_id, named)).body).toEqual({verdict: 'accepted', reward: '2.5'})
    const {getJobOutput} = await import('../../src/core/api/renter-jobs.js')
    const {ApiClient} = await import('../../src/core/api/client.js')
    expect((await getJobOutput(new ApiClient({endpoint: market.endpoint, key: renter}), job.job_id)).equals(big)).toBe(true)
  })
})

describe('§12 quantum_circuit results: the shape', () => {
  it('accepts counts of the circuit\'s width summing to the shots; rejects other widths, sums and symbols', async () => {
    const provider = await jobProvider(market)
    const make = async () => lease(market, provider, (await createJob(market, generateKeyPair(), jobBody('quantum_circuit', ghzDigest, '{"shots": 100, "seed": 1}'))).job_id)
    const honest = await make()
    expect((await submit(market, provider, honest.lease_id, envelope(honest, Buffer.from(JSON.stringify(simulate(GHZ_3, 100))), provider.agent))).body.verdict).toBe('accepted')
    for (const counts of [{'00': 100}, {'000': 60, '111': 39}, {'0a0': 100}, {}]) {
      const leased = await make()
      const verdict = await submit(market, provider, leased.lease_id, envelope(leased, Buffer.from(JSON.stringify({counts})), provider.agent))
      expect(verdict.body, JSON.stringify(counts)).toMatchObject({verdict: 'rejected', reason: 'bad_output'})
    }
  })
})

describe('§12 traps (devnet start --trap-ratio)', () => {
  let trapMarket: Devnet
  let digests: {zk: string; ghz: string; container: string}

  beforeAll(async () => {
    // Ratio 1: every renter job brings one trap of its kind, so each test meets one.
    trapMarket = await startDevnet({trapRatio: 1})
    const renter = generateKeyPair()
    digests = {
      zk: await uploadProgram(trapMarket, renter, multiplierProgram()),
      ghz: await uploadProgram(trapMarket, renter, Buffer.from(GHZ_3)),
      container: await uploadProgram(trapMarket, renter, Buffer.from(JSON.stringify({image: 'busybox', command: ['sh', '-c', 'cp /input /output']}))),
    }
  })
  afterAll(() => trapMarket.stop())

  /** Creates a renter job and waits for its trap: returns both as the provider sees them. */
  async function jobAndTrap(provider: Provider, body: Record<string, unknown>): Promise<{renterJob: string; trap: string; jobs: Record<string, unknown>[]}> {
    const open = async () => (await send<{jobs: Record<string, unknown>[]}>(trapMarket, 'GET', `/providers/${provider.pk}/jobs/open`, {key: provider.agent})).body.jobs
    const before = new Set((await open()).map((job) => job.job_id))
    const created = await createJob(trapMarket, generateKeyPair(), body)
    let fresh: Record<string, unknown>[] = []
    const appeared = await waitFor(async () => {
      fresh = (await open()).filter((job) => !before.has(job.job_id))
      return fresh.length >= 2
    }, 30_000, 50)
    expect(appeared, 'the trap appears beside the renter job').toBe(true)
    const trap = fresh.find((job) => job.job_id !== created.job_id)
    return {renterJob: created.job_id, trap: String(trap?.job_id), jobs: fresh}
  }

  /** What an agent does: lease, fetch program and input, run, answer. `answer` is the executor. */
  async function run(provider: Provider, jobId: string, answer: (program: Buffer, input: Buffer) => Promise<Buffer> | Buffer) {
    const api = jobsApi(trapMarket, provider)
    const leased = await lease(trapMarket, provider, jobId)
    const output = await answer(await api.program(leased.job.program.digest), await api.input(jobId))
    return (await submit(trapMarket, provider, leased.lease_id, envelope(leased, output, provider.agent))).body
  }

  const sameShape = (jobs: Record<string, unknown>[]) => {
    const keys = jobs.map((job) => Object.keys(job).sort().join(','))
    expect(new Set(keys).size).toBe(1)
    const {job_id: _a, program: _b, input: _c, deadline: _d, created_at: _e, ...first} = jobs[0] ?? {}
    const {job_id: _f, program: _g, input: _h, deadline: _i, created_at: _j, ...second} = jobs[1] ?? {}
    expect(second).toEqual(first)
  }

  it('quantum_circuit: an honest simulator passes the trap, a wrong answer is rejected with trap_failed', async () => {
    const provider = await jobProvider(trapMarket)
    const {renterJob, trap, jobs} = await jobAndTrap(provider, jobBody('quantum_circuit', digests.ghz, '{"shots": 1000, "seed": 3}'))
    sameShape(jobs)
    const honest = (program: Buffer, input: Buffer) => Buffer.from(JSON.stringify(simulate(program.toString(), (JSON.parse(input.toString()) as {shots: number}).shots)))
    expect((await run(provider, renterJob, honest)).verdict).toBe('accepted')
    expect((await run(provider, trap, honest)).verdict).toBe('accepted')

    const cheat = await jobProvider(trapMarket)
    const again = await jobAndTrap(cheat, jobBody('quantum_circuit', digests.ghz, '{"shots": 1000, "seed": 3}'))
    // Shaped right (3 bits, summing to the shots), but not the circuit's distribution.
    const uniform = () => Buffer.from(JSON.stringify({counts: {'000': 250, '010': 250, '101': 250, '111': 250}}))
    expect((await run(cheat, again.renterJob, uniform)).verdict).toBe('accepted')
    expect(await run(cheat, again.trap, uniform)).toMatchObject({verdict: 'rejected', reason: 'trap_failed'})
    const sla = await send<{traps: {passed: number; failed: number}}>(trapMarket, 'GET', `/providers/${cheat.pk}/sla`)
    expect(sla.body.traps).toEqual({passed: 0, failed: 1})
    expect((await send<{traps: unknown}>(trapMarket, 'GET', `/providers/${provider.pk}/sla`)).body.traps).toEqual({passed: 1, failed: 0})
  })

  it('zk_proof: the known answer is the circuit\'s public signals; a valid proof of another input fails the trap', async () => {
    const provider = await jobProvider(trapMarket)
    const {trap, jobs} = await jobAndTrap(provider, jobBody('zk_proof', digests.zk, JSON.stringify(MULTIPLIER_INPUT)))
    sameShape(jobs)
    const otherInput = await proveMultiplier({a: '3', b: '12'})
    expect(await run(provider, trap, () => proofBytes(otherInput))).toMatchObject({verdict: 'rejected', reason: 'trap_failed'})
    const honest = await jobProvider(trapMarket)
    const second = await jobAndTrap(honest, jobBody('zk_proof', digests.zk, JSON.stringify(MULTIPLIER_INPUT)))
    expect((await run(honest, second.trap, () => proofBytes(proof))).verdict).toBe('accepted')
  })

  it('container: the output must be the known one', async () => {
    const provider = await jobProvider(trapMarket)
    const {trap} = await jobAndTrap(provider, jobBody('container', digests.container, Buffer.from('renter bytes')))
    const runProgram = (program: Buffer, input: Buffer) => {
      const command = (JSON.parse(program.toString()) as {command: string[]}).command.join(' ')
      // What `sh -c 'tr a-f A-F < /input > /output'` leaves at /output.
      expect(command).toContain('tr a-f A-F')
      return Buffer.from(input.toString().toUpperCase())
    }
    expect((await run(provider, trap, runProgram)).verdict).toBe('accepted')
    const lazy = await jobProvider(trapMarket)
    const second = await jobAndTrap(lazy, jobBody('container', digests.container, Buffer.from('renter bytes')))
    expect(await run(lazy, second.trap, (_program, input) => input)).toMatchObject({verdict: 'rejected', reason: 'trap_failed'})
  })
})
