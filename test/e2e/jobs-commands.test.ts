import {appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'

import {ApiClient} from '../../src/core/api/client.js'
import {getDispute, type EvidenceItem} from '../../src/core/api/disputes.js'
import {JobsApi} from '../../src/core/api/jobs.js'
import type {Lease} from '../../src/core/api/job-schemas.js'
import {archiveResultEnvelope} from '../../src/core/result-archive.js'
import {sha256Hex, signResultEnvelope, verifyResultEnvelope, type SignedResultEnvelope} from '../../src/core/signing.js'
import {parseJson, runCli, TEST_PASSPHRASE} from '../support/cli.js'
import {client, initProvider, renter, startDevnet, type Devnet, type ProviderSetup} from '../support/marketplace.js'

/**
 * The operator's job commands (the built CLI) against a real devnet on loopback: jobs a renter opened with `devnet
 * job create`, leased and answered here with the client (as the job loop will), the answers made by `jobs run-local`.
 */

let devnet: Devnet
let provider: ProviderSetup
let dataDir: string
let env: Record<string, string>
let api: JobsApi

interface JobJson {
  job_id: string
  kind: string
  program: {digest: string}
  input: {digest: string}
}

const NO_RETRY = {retries: 0, baseDelayMs: 1, maxDelayMs: 1}
const stateDir = () => join(provider.configDir, 'state')
const renterCli = (args: string[]) => runCli(['devnet', 'job', 'create', ...args, '--endpoint', devnet.endpoint, '--data-dir', join(dataDir, 'renter'), '--json'], {env})

async function openJob(args: string[]): Promise<JobJson> {
  const created = await renterCli(args)
  expect(created.exitCode, created.stderr).toBe(0)
  return parseJson<JobJson>(created)
}

/** Leases a job, answers it with `output`, keeps the envelope as the agent does, submits it. */
async function answer(job: JobJson, output: Buffer): Promise<{lease: Lease; envelope: SignedResultEnvelope; verdict: string}> {
  const lease = await api.lease(job.job_id)
  const envelope = signResultEnvelope(provider.agentKey, {
    job_id: job.job_id,
    lease_id: lease.lease_id,
    program_digest: job.program.digest,
    input_digest: job.input.digest,
    output: {digest: sha256Hex(output), size_bytes: output.length, data_b64: output.toString('base64')},
    started_at: lease.leased_at,
    finished_at: Date.now(),
  })
  archiveResultEnvelope(stateDir(), envelope)
  const verdict = await api.submitResult(lease.lease_id, envelope)
  return {lease, envelope, verdict: verdict.verdict}
}

/** `jobs run-local` on the job's own program and input, fetched as the agent fetches them; the output bytes. */
async function runLocally(job: JobJson, name: string): Promise<{result: {executor: string; output: {digest: string}; check: string}; output: Buffer}> {
  const programFile = join(dataDir, `${name}.program`)
  const inputFile = join(dataDir, `${name}.input`)
  const outputFile = join(dataDir, `${name}.output`)
  writeFileSync(programFile, await api.program(job.program.digest))
  writeFileSync(inputFile, await api.input(job.job_id))
  const ran = await runCli(['jobs', 'run-local', programFile, inputFile, '--output', outputFile, '--json'], {env})
  expect(ran.exitCode, ran.stderr).toBe(0)
  return {result: parseJson(ran), output: readFileSync(outputFile)}
}

let zk: JobJson
let ghz: JobJson
let forged: JobJson
let zkAnswer: Awaited<ReturnType<typeof answer>>
let forgedAnswer: Awaited<ReturnType<typeof answer>>

beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
  dataDir = mkdtempSync(join(tmpdir(), 'outpost-jobs-e2e-'))
  env = {OUTPOST_CONFIG_DIR: provider.configDir}
  appendFileSync(join(provider.configDir, 'outpost.toml'), '\n[jobs]\nenabled = true\nkinds = ["zk_proof", "quantum_circuit"]\n')
  // The agent's state dir, as its first start leaves it: run-local keeps its measured speeds there.
  mkdirSync(stateDir(), {recursive: true, mode: 0o700})
  await client(devnet.endpoint, provider.agentKey).post(`/providers/${provider.providerPubkey}/heartbeat`, {
    schema: z.unknown(),
    body: {version: '0.1.0', provisioner_type: 'local', capabilities: ['job:zk_proof', 'job:quantum_circuit'], active_contracts: 0, capacity: {cpu_cores: 4, memory_mb: 8192, storage_gb: 50, gpu_count: 0}},
  })
  api = new JobsApi(new ApiClient({endpoint: devnet.endpoint, key: provider.agentKey, retry: NO_RETRY}), provider.providerPubkey)

  zk = await openJob(['--example', 'multiplier', '--reward', '1.5', '--collateral', '2'])
  ghz = await openJob(['--example', 'ghz', '--shots', '200', '--reward', '0.75', '--collateral', '1'])
  forged = await openJob(['--example', 'multiplier', '--reward', '1.5', '--collateral', '4'])

  const proof = await runLocally(zk, 'zk')
  zkAnswer = await answer(zk, proof.output)
  const counts = await runLocally(ghz, 'ghz')
  expect((await answer(ghz, counts.output)).verdict).toBe('accepted')
  // A proof whose public output was changed: the devnet's Groth16 check refuses it and keeps the collateral.
  const tampered = JSON.parse(proof.output.toString('utf8')) as {proof: unknown; public_signals: string[]}
  tampered.public_signals[0] = '12345'
  forgedAnswer = await answer(forged, Buffer.from(JSON.stringify(tampered)))
}, 180_000)

afterAll(async () => {
  await devnet?.stop()
  if (dataDir) rmSync(dataDir, {recursive: true, force: true})
  if (provider) rmSync(provider.configDir, {recursive: true, force: true})
})

interface ListJson {
  provider_pubkey: string
  leases: (Lease & {forfeited?: string})[]
  totals: {leases: number; by_status: Record<string, number>; rewards: string; forfeited: string}
}

describe('outpost jobs (built CLI, real devnet)', () => {
  it('the answers came from run-local: a proof the devnet accepted and a forged copy it rejected', () => {
    expect(zkAnswer.verdict).toBe('accepted')
    expect(forgedAnswer.verdict).toBe('rejected')
  })

  it('jobs list: every lease with its status, verdict and reward; totals; filters', async () => {
    const listed = await runCli(['jobs', 'list', '--json'], {env})
    expect(listed.exitCode, listed.stderr).toBe(0)
    const all = parseJson<ListJson>(listed)
    expect(all.provider_pubkey).toBe(provider.providerPubkey)
    expect(all.leases.map((lease) => lease.job_id).sort()).toEqual([zk.job_id, ghz.job_id, forged.job_id].sort())
    expect(all.totals).toEqual({leases: 3, by_status: {accepted: 2, rejected: 1}, rewards: '2.25', forfeited: '4'})
    expect(all.leases.find((lease) => lease.job_id === forged.job_id)).toMatchObject({status: 'rejected', reason: 'invalid_proof', forfeited: '4'})

    const rejected = parseJson<ListJson>(await runCli(['jobs', 'list', '--status', 'rejected', '--json'], {env}))
    expect(rejected.leases.map((lease) => lease.job_id)).toEqual([forged.job_id])

    const table = await runCli(['jobs', 'list', '--kind', 'zk_proof'], {env})
    expect(table.exitCode, table.stderr).toBe(0)
    expect(table.stdout).toMatch(/lease\s+job\s+kind\s+status\s+verdict\s+reward/)
    expect(table.stdout).toMatch(/rejected\s+rejected: invalid_proof\s+-4 forfeited/)
    expect(table.stdout).not.toContain(ghz.job_id)
    expect(table.stdout).toContain('2 lease(s): 1 accepted, 1 rejected; rewards 1.5, forfeited 4')
  })

  it('jobs show: the job, its lease, the envelope the agent kept, the verdict; by job or lease id; with the main key, the marketplace\'s record', async () => {
    const shown = await runCli(['jobs', 'show', zk.job_id, '--json'], {env})
    expect(shown.exitCode, shown.stderr).toBe(0)
    const report = parseJson<{job: {kind: string}; leases: Lease[]; result: SignedResultEnvelope; verdict: {verdict: string; reward?: string}; archived_envelopes: unknown[]}>(shown)
    expect(report).toMatchObject({job: {kind: 'zk_proof'}, verdict: {verdict: 'accepted', reward: '1.5'}, result: zkAnswer.envelope})
    expect(report.archived_envelopes).toEqual([zkAnswer.envelope])
    expect(verifyResultEnvelope(report.result)).toBe(true)

    const withMain = await runCli(['jobs', 'show', forged.job_id, '--json'], {env: {...env, OUTPOST_MAIN_KEY_FILE: join(provider.configDir, 'provider-main.key'), OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}})
    expect(withMain.exitCode, withMain.stderr).toBe(0)
    expect(parseJson(withMain)).toMatchObject({verdict: {verdict: 'rejected', reason: 'invalid_proof', detail: expect.stringContaining('Groth16')}, result: forgedAnswer.envelope})

    // By the lease's id, as a person reads it.
    const human = await runCli(['jobs', 'show', zkAnswer.lease.lease_id], {env})
    expect(human.exitCode, human.stderr).toBe(0)
    expect(human.stdout).toContain(`job           ${zk.job_id}`)
    expect(human.stdout).toMatch(/verdict\s+accepted, 1\.5 paid/)
    expect(human.stdout).toContain(`output ${zkAnswer.envelope.output.digest}`)

    const unknown = await runCli(['jobs', 'show', '0'.repeat(32), '--json'], {env})
    expect(unknown.exitCode).toBe(1)
    expect(parseJson(unknown)).toMatchObject({error: {code: 'not_found', suggestion: expect.stringContaining('jobs list')}})
  })

  it('jobs sla: the §12 figures of this provider', async () => {
    const sla = await runCli(['jobs', 'sla', '--json'], {env})
    expect(sla.exitCode, sla.stderr).toBe(0)
    expect(parseJson(sla)).toMatchObject({provider_pubkey: provider.providerPubkey, days: 30, leases: 3, accepted: 2, rejected: 1, expired: 0, failed: 0, on_time_percent: 100, traps: {passed: 0, failed: 0}})
  })

  it('dispute evidence --auto --job: the job\'s signed envelopes and verdict, which the renter verifies on their own', async () => {
    const renterSide = renter(devnet.endpoint)
    const contract = await renterSide.create(provider.offeringId)
    const opened = await client(devnet.endpoint, renterSide.key).post(`/contracts/${contract.contract_id}/disputes`, {
      schema: z.object({dispute_id: z.string()}),
      body: {type: 'sla_violation', description: 'the proof I was sent did not verify'},
    })
    const disputeId = opened.dispute_id
    const mainEnv = {...env, OUTPOST_MAIN_KEY_FILE: join(provider.configDir, 'provider-main.key'), OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}

    const preview = await runCli(['dispute', 'evidence', disputeId, '--auto', '--job', zk.job_id, '--job', forged.job_id, '--dry-run'], {env: mainEnv})
    expect(preview.exitCode, preview.stderr).toBe(0)
    expect(preview.stdout).toMatch(/result_envelope\s+[0-9a-f]{16}…\s+signed result envelope of job/)
    expect(preview.stdout).toContain(`holds nothing about contract ${contract.contract_id}`)

    const submitted = await runCli(['dispute', 'evidence', disputeId, '--auto', '--job', zk.job_id, '--job', forged.job_id, '--yes', '--json'], {env: mainEnv})
    expect(submitted.exitCode, submitted.stderr).toBe(0)
    expect(parseJson(submitted)).toMatchObject({submitted: true, dispute: {status: 'responded'}})

    const seen = await getDispute(new ApiClient({endpoint: devnet.endpoint, key: renterSide.key, retry: NO_RETRY}), disputeId)
    const envelopes = seen.evidence.filter((item: EvidenceItem) => item.type === 'result_envelope').map((item) => item.data as SignedResultEnvelope)
    // The agent's copy and the marketplace's settled one are the same envelope: each job's goes in once.
    expect(envelopes).toEqual([zkAnswer.envelope, forgedAnswer.envelope])
    for (const envelope of envelopes) expect(verifyResultEnvelope(envelope)).toBe(true)
    expect(seen.evidence.filter((item) => item.type === 'job_verdict').map((item) => (item.data as {verdict: {verdict: string}}).verdict.verdict)).toEqual(['accepted', 'rejected'])

    const nothing = await runCli(['dispute', 'evidence', disputeId, '--auto', '--job', '1'.repeat(32), '--yes', '--json'], {env: mainEnv})
    expect(nothing.exitCode).toBe(1)
    expect(parseJson(nothing)).toMatchObject({error: {code: 'no_evidence'}})
  })
})
