import {readFileSync} from 'node:fs'
import QuantumCircuit from 'quantum-circuit'
import * as snarkjs from 'snarkjs'

import {ApiClient} from '../../src/core/api/client.js'
import {JobsApi} from '../../src/core/api/jobs.js'
import {sha256Hex, signResultEnvelope, type KeyPair, type SignedResultEnvelope} from '../../src/core/signing.js'
import {templatePath} from '../../src/core/templates.js'
import {pub, registerProvider, send, type Provider, type Target} from '../support/harness.js'

/**
 * What the §§12–14 tests share: the committed zk example as a program, real Groth16 proofs of it, a real quantum
 * simulator for honest answers, a provider ready for jobs, and signed result envelopes.
 */

const multiplierFile = (name: string) => readFileSync(templatePath(`jobs/multiplier/${name}`))

export const MULTIPLIER_INPUT = JSON.parse(multiplierFile('input.json').toString('utf8')) as Record<string, string>

/** The `snarkjs-groth16-v1` program of templates/jobs/multiplier. */
export function multiplierProgram(): Buffer {
  return Buffer.from(
    JSON.stringify({
      format: 'snarkjs-groth16-v1',
      wasm_b64: multiplierFile('multiplier.wasm').toString('base64'),
      zkey_b64: multiplierFile('multiplier.zkey').toString('base64'),
      verification_key: JSON.parse(multiplierFile('verification_key.json').toString('utf8')) as unknown,
    }),
  )
}

export interface ZkOutput {
  proof: {pi_a: string[]; pi_b: string[][]; pi_c: string[]; protocol: string; curve: string}
  public_signals: string[]
}

/** A real proof of the multiplier for an input (about a second here, the first one longer). */
export async function proveMultiplier(input: Record<string, string> = MULTIPLIER_INPUT): Promise<ZkOutput> {
  const {proof, publicSignals} = await snarkjs.groth16.fullProve(input, new Uint8Array(multiplierFile('multiplier.wasm')), new Uint8Array(multiplierFile('multiplier.zkey')))
  return {proof, public_signals: publicSignals}
}

/** snarkjs keeps its curve's worker threads: end them, or the test process never exits. */
export async function stopSnarkjs(): Promise<void> {
  await (globalThis as {curve_bn128?: {terminate(): Promise<void>}}).curve_bn128?.terminate()
}

export const GHZ_3 = ['OPENQASM 2.0;', 'include "qelib1.inc";', 'qreg q[3];', 'creg c[3];', 'h q[0];', 'cx q[0],q[1];', 'cx q[1],q[2];', 'measure q -> c;', ''].join('\n')

/** What an honest provider answers for a circuit: the quantum-circuit simulator's counts over the shots. */
export function simulate(qasm: string, shots: number): {counts: Record<string, number>} {
  const circuit = new QuantumCircuit()
  circuit.importQASM(qasm, (errors: unknown[]) => {
    if (errors.length > 0) throw new Error(`QASM: ${JSON.stringify(errors)}`)
  })
  circuit.run()
  return {counts: circuit.measureAllMultishot(shots) as Record<string, number>}
}

export const CAPACITY = {cpu_cores: 8, memory_mb: 16_384, storage_gb: 100, gpu_count: 0}
export const ALL_KINDS = ['job:zk_proof', 'job:quantum_circuit', 'job:container']

/** A provider whose agent heartbeats job capabilities and capacity, with a stake (the unstaked tier allows 2 at once). */
export async function jobProvider(
  market: Target,
  options: {stake?: string; capabilities?: string[]; capacity?: Record<string, unknown>; status?: 'active' | 'draining'} = {},
): Promise<Provider> {
  const provider = await registerProvider(market)
  if (options.stake !== '0') {
    const staked = await send(market, 'POST', `/providers/${provider.pk}/stake`, {key: provider.main, body: {amount: options.stake ?? '25000'}})
    if (staked.status !== 200) throw new Error(`stake: ${staked.status} ${JSON.stringify(staked.body)}`)
  }
  await heartbeat(market, provider, options)
  return provider
}

export async function heartbeat(
  market: Target,
  provider: Provider,
  options: {capabilities?: string[]; capacity?: Record<string, unknown>; status?: 'active' | 'draining'} = {},
): Promise<void> {
  const body = {
    version: '0.1.0',
    provisioner_type: 'local',
    capabilities: options.capabilities ?? ALL_KINDS,
    active_contracts: 0,
    capacity: options.capacity ?? CAPACITY,
    ...(options.status ? {status: options.status} : {}),
  }
  const answer = await send(market, 'POST', `/providers/${provider.pk}/heartbeat`, {key: provider.agent, body})
  if (answer.status !== 200) throw new Error(`heartbeat: ${answer.status} ${JSON.stringify(answer.body)}`)
}

export function jobsApi(market: Target, provider: Provider): JobsApi {
  return new JobsApi(new ApiClient({endpoint: market.endpoint, key: provider.agent, retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1}}), provider.pk)
}

export async function uploadProgram(market: Target, key: KeyPair, bytes: Buffer): Promise<string> {
  const answer = await send<{digest: string}>(market, 'POST', '/programs', {key, rawBody: bytes, headers: {'content-type': 'application/octet-stream'}})
  if (answer.status !== 201) throw new Error(`program: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body.digest
}

export interface JobAnswer {
  job_id: string
  kind: string
  status: string
  program: {digest: string; size_bytes: number}
  input: {digest: string; size_bytes: number}
  reward: {mode: string; amount?: string; max_fee?: string}
  collateral: string
  deadline: number
  attempts_left: number
  bid_closes_at?: number
  reveal_closes_at?: number
  status_reason?: string | null
  result?: SignedResultEnvelope | null
  verdict?: {verdict: string; reason?: string; reward?: string} | null
}

export function jobBody(kind: 'zk_proof' | 'quantum_circuit' | 'container', programDigest: string, input: Buffer | string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    kind,
    program_digest: programDigest,
    input_b64: Buffer.from(input).toString('base64'),
    resources: {cpu_cores: 1, memory_mb: 512},
    reward: {mode: 'fixed', amount: '2.5'},
    collateral: '10',
    deadline_seconds: 600,
    lease_seconds: 60,
    max_attempts: 3,
    ...overrides,
  }
}

export async function createJob(market: Target, renter: KeyPair, body: Record<string, unknown>): Promise<JobAnswer> {
  const answer = await send<JobAnswer>(market, 'POST', '/jobs', {key: renter, body})
  if (answer.status !== 201) throw new Error(`job: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body
}

export interface LeaseAnswer {
  lease_id: string
  job_id: string
  agent_pubkey: string
  status: string
  leased_at: number
  expires_at: number
  deadline: number
  job: JobAnswer
  reason?: string
  reward?: string
}

export async function lease(market: Target, provider: Provider, jobId: string): Promise<LeaseAnswer> {
  const answer = await send<LeaseAnswer>(market, 'POST', `/providers/${provider.pk}/jobs/${jobId}/lease`, {key: provider.agent, body: {}})
  if (answer.status !== 201) throw new Error(`lease: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body
}

/** A signed envelope carrying `output` inline, for a lease of a job. */
export function envelope(leased: LeaseAnswer, output: Buffer, signer: KeyPair, overrides: Partial<SignedResultEnvelope> = {}): SignedResultEnvelope {
  const {signature: _signature, signer: _signer, ...fields} = {
    job_id: leased.job_id,
    lease_id: leased.lease_id,
    program_digest: leased.job.program.digest,
    input_digest: leased.job.input.digest,
    output: {digest: sha256Hex(output), size_bytes: output.length, data_b64: output.toString('base64')},
    started_at: leased.leased_at,
    finished_at: leased.leased_at + 1,
    ...overrides,
  } as SignedResultEnvelope
  return signResultEnvelope(signer, fields)
}

export async function submit(market: Target, provider: Provider, leaseId: string, signed: SignedResultEnvelope) {
  return send<{verdict: string; reason?: string; reward?: string}>(market, 'POST', `/providers/${provider.pk}/leases/${leaseId}/result`, {key: provider.agent, body: signed})
}

export async function stakeOf(market: Target, provider: Provider): Promise<{staked: string; locked: string; rewards_pending: string}> {
  return (await send<{staked: string; locked: string; rewards_pending: string}>(market, 'GET', `/providers/${provider.pk}/stake`)).body
}

export async function openJobIds(market: Target, provider: Provider, wait = 0): Promise<string[]> {
  const answer = await send<{jobs: {job_id: string}[]}>(market, 'GET', `/providers/${provider.pk}/jobs/open${wait > 0 ? `?wait=${wait}` : ''}`, {key: provider.agent})
  if (answer.status !== 200) throw new Error(`jobs/open: ${answer.status} ${JSON.stringify(answer.body)}`)
  return answer.body.jobs.map((job) => job.job_id)
}

export {pub}
