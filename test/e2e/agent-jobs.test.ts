import {chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, afterEach, describe, expect, it} from 'vitest'

import {ApiError} from '../../src/core/api/api-error.js'
import {JobsApi} from '../../src/core/api/jobs.js'
import {ProviderApi} from '../../src/core/api/provider.js'
import {toHex} from '../../src/core/hex.js'
import {canonicalJson, generateKeyPair, sha256Hex, signResultEnvelope} from '../../src/core/signing.js'
import {templatePath} from '../../src/core/templates.js'
import {submitJob} from '../../src/devnet/jobs.js'
import {startDevnet, type Devnet} from '../support/devnet.js'
import {testDocker} from '../support/dockerd.js'
import {client, initProvider, metricsUrl, startAgent, waitFor, type AgentProcess, type ProviderSetup} from '../support/marketplace.js'
import {outboxEntries} from '../support/agent-run.js'
import {jobAgentEnv, openExampleJobs, readJobMarket, renterClient, signedEnvelopes, sumMicro} from '../support/job-run.js'
import {readResultEnvelopes} from '../../src/core/result-archive.js'

/**
 * `outpost run` (the built CLI) serving the job market of `outpost devnet start --trap-ratio 0.1` (the built CLI, in a
 * child process): zk proofs by the snarkjs executor and quantum circuits by the qasm simulator, verified and paid by
 * the devnet. The issue asks for 50 jobs of each kind; on this 2-core machine shared with other work a zk proof costs
 * 1–3 s, so the default is 10 of each (one trap each at 0.1): OUTPOST_E2E_JOBS=50 runs the count.
 */
const JOBS = Number(process.env.OUTPOST_E2E_JOBS ?? 10)

const temp = mkdtempSync(join(tmpdir(), 'outpost-agent-jobs-'))
const devnets: Devnet[] = []
const agents: AgentProcess[] = []
const configDirs: string[] = []

/** `outpost devnet start --trap-ratio R` (the built CLI) in a child process. */
async function devnet(name: string, trapRatio = '0.1'): Promise<{process: Devnet; dataDir: string}> {
  const dataDir = join(temp, name)
  const started = await startDevnet({dataDir, process: {args: ['--trap-ratio', trapRatio]}})
  devnets.push(started)
  return {process: started, dataDir}
}

async function provider(endpoint: string): Promise<ProviderSetup> {
  const setup = await initProvider(endpoint)
  configDirs.push(setup.configDir)
  return setup
}

function agent(setup: ProviderSetup, logName: string, overrides: Record<string, string> = {}): AgentProcess {
  const logFile = join(temp, `${logName}.log`)
  writeFileSync(logFile, '', {flag: 'a'})
  const started = startAgent(jobAgentEnv(setup.configDir, overrides), logFile)
  agents.push(started)
  return started
}

async function stopAgent(running: AgentProcess): Promise<void> {
  // Once it runs (its own start-up line: agents of one test share a log): a signal while Node itself still loads
  // takes the signal's default action, as for any program.
  const started = () => running.logLines().some((line) => line.pid === running.pid && line.msg === 'agent starting')
  expect(await waitFor(started, 60_000, 50), 'the agent started').toBe(true)
  running.kill('SIGTERM')
  const {code, signal} = await running.exited
  expect({code, signal}, readFileSync(running.logFile, 'utf8').slice(-4000)).toEqual({code: 0, signal: null})
}

/** Lines of an agent's log with this message. */
function logged(running: AgentProcess, message: string): number {
  return readFileSync(running.logFile, 'utf8').split('\n').filter((line) => line.includes(`"msg":"${message}"`)).length
}

function allSettled(dataDir: string): boolean {
  const {jobs} = readJobMarket(dataDir)
  return jobs.length > 0 && jobs.every((job) => job.status === 'completed' || job.status === 'failed')
}

/** Waits until every job of `ids` (and the traps the devnet mixed in) is settled: completed or failed. */
async function settled(dataDir: string, timeoutMs: number, log: string): Promise<void> {
  const done = await waitFor(() => allSettled(dataDir), timeoutMs, 250)
  if (!done) {
    const {jobs} = readJobMarket(dataDir)
    throw new Error(`jobs not settled: ${JSON.stringify(jobs.filter((job) => job.status !== 'completed' && job.status !== 'failed'))}\n${readFileSync(log, 'utf8').slice(-6000)}`)
  }
}

afterEach(() => {
  for (const running of agents.splice(0)) running.kill('SIGKILL')
})
afterAll(async () => {
  for (const running of devnets) await running.stop()
  for (const dir of configDirs) rmSync(dir, {recursive: true, force: true})
  if (!process.env.KEEPTMP) rmSync(temp, {recursive: true, force: true})
})

describe('outpost run serving a job market (PROTOCOL §12)', () => {
  it(`proves ${JOBS} zk jobs and simulates ${JOBS} quantum jobs: every honest result accepted, every trap passed, rewards paid, collateral back`, {timeout: 240_000}, async () => {
    const {process: market, dataDir} = await devnet('honest')
    const setup = await provider(market.endpoint)
    const running = agent(setup, 'honest')
    const metrics = await metricsUrl(running)
    // The heartbeat offers the kinds served, with the capacity and what is free of it (§§5, 12).
    await waitFor(() => readJobMarket(dataDir).balances(setup.providerPubkey).capabilities !== null, 30_000, 100)
    const heartbeat = readJobMarket(dataDir).balances(setup.providerPubkey)
    expect(JSON.parse(heartbeat.capabilities ?? '[]')).toEqual(expect.arrayContaining(['job:zk_proof', 'job:quantum_circuit']))
    expect(JSON.parse(heartbeat.capabilities ?? '[]')).not.toContain('job:container')
    expect(JSON.parse(heartbeat.capacity ?? '{}')).toMatchObject({cpu_cores: expect.any(Number), memory_mb: expect.any(Number)})
    expect(JSON.parse(heartbeat.free_capacity ?? '{}')).toMatchObject({cpu_cores: expect.any(Number), memory_mb: expect.any(Number)})
    expect(heartbeat.active_leases).toBe(0)
    const renter = renterClient(market.endpoint, generateKeyPair())
    const ids = [...(await openExampleJobs(renter, 'multiplier', JOBS)), ...(await openExampleJobs(renter, 'ghz', JOBS))]
    await settled(dataDir, 200_000, running.logFile)

    const {jobs, leases, balances} = readJobMarket(dataDir)
    const traps = jobs.filter((job) => job.trap === 1)
    expect(jobs.length).toBe(ids.length + traps.length)
    // r = 0.1: one trap per ten renter jobs of each kind.
    expect(traps.length).toBe(2 * Math.floor(JOBS / 10))
    expect(jobs.every((job) => job.status === 'completed'), JSON.stringify(jobs.filter((job) => job.status !== 'completed'))).toBe(true)
    expect(leases.filter((lease) => lease.status !== 'accepted')).toEqual([])
    expect(leases.filter((lease) => lease.trap === 1).every((lease) => lease.status === 'accepted')).toBe(true)
    const stake = balances(setup.providerPubkey)
    expect(BigInt(stake.rewards_pending_micro)).toBe(sumMicro(leases.map((lease) => lease.reward_micro)))
    expect(BigInt(stake.rewards_pending_micro)).toBe(BigInt(jobs.length) * 1_500_000n)
    expect(stake.locked_micro).toBe('0')
    expect(stake.staked_micro).toBe('25000000000')

    const text = await (await fetch(metrics)).text()
    expect(text).toMatch(new RegExp(`^outpost_agent_jobs_leased_total\\{kind="zk_proof"\\} ${JOBS + traps.length / 2}$`, 'm'))
    expect(text).toMatch(new RegExp(`^outpost_agent_job_results_total\\{kind="quantum_circuit",verdict="accepted",reason=""\\} ${JOBS + traps.length / 2}$`, 'm'))
    expect(text).toMatch(new RegExp(`^outpost_agent_job_rewards_total ${(jobs.length * 1.5).toString().replace('.', '\\.')}$`, 'm'))
    expect(text).toMatch(/^outpost_agent_job_executor_seconds_count\{kind="zk_proof"\} [1-9]/m)
    expect(text).toMatch(/^outpost_agent_job_time_to_result_seconds_count\{kind="quantum_circuit"\} [1-9]/m)
    await stopAgent(running)
    expect(outboxEntries(join(setup.configDir, 'state'))).toEqual([])
    // Each result is kept by job for `dispute evidence --auto --job`.
    for (const job of jobs) expect(readResultEnvelopes(join(setup.configDir, 'state'), job.job_id).envelopes, job.job_id).toHaveLength(1)
  })

  it(`runs ${JOBS} container jobs on a Docker engine with traps: every result accepted, rewards paid, collateral back`, {timeout: 240_000}, async (context) => {
    const docker = await testDocker()
    if (!docker.available) {
      context.skip(docker.reason)
      return
    }
    const {process: market, dataDir} = await devnet('containers')
    const setup = await provider(market.endpoint)
    const running = agent(setup, 'containers', {OUTPOST_JOBS_KINDS: '["container"]', OUTPOST_JOBS_DOCKER_SOCKET: docker.socket})
    const renter = renterClient(market.endpoint, generateKeyPair())
    for (let index = 0; index < JOBS; index++) {
      await submitJob(renter, {
        kind: 'container',
        image: docker.image,
        command: ['sh', '-c', 'wc -c < /input > /output'],
        shots: 0,
        reward: {mode: 'fixed', amount: '1.5'},
        collateral: '2',
        deadlineSeconds: 600,
        leaseSeconds: 60,
        maxAttempts: 3,
        resources: {cpu_cores: 1, memory_mb: 256, gpu_count: 0},
        requiresAttestation: false,
      })
    }
    await settled(dataDir, 200_000, running.logFile)
    await stopAgent(running)
    const {jobs, leases, balances} = readJobMarket(dataDir)
    expect(jobs.filter((job) => job.trap === 1)).toHaveLength(Math.floor(JOBS / 10))
    expect(jobs.every((job) => job.status === 'completed')).toBe(true)
    expect(leases.filter((lease) => lease.status !== 'accepted')).toEqual([])
    const stake = balances(setup.providerPubkey)
    expect(BigInt(stake.rewards_pending_micro)).toBe(sumMicro(leases.map((lease) => lease.reward_micro)))
    expect(stake).toMatchObject({locked_micro: '0', staked_micro: '25000000000'})
  })

  it('a provider whose executor returns a wrong answer (a script) gets the traps rejected and their collateral forfeited', {timeout: 180_000}, async () => {
    // Half the renter's jobs bring a trap. The script answers a quantum circuit with two outcomes in equal parts: the
    // shape the marketplace checks for any job, and never the known distribution of a trap (GHZ or one basis state).
    const {process: market, dataDir} = await devnet('wrong-answer', '0.5')
    const setup = await provider(market.endpoint)
    const script = join(temp, 'wrong-answer.mjs')
    writeFileSync(
      script,
      [
        `#!${process.execPath}`,
        "import {readFileSync, writeFileSync} from 'node:fs'",
        "const run = JSON.parse(readFileSync(0, 'utf8'))",
        "const width = Number(/qreg\\s+\\w+\\[(\\d+)\\]/.exec(readFileSync(run.program_path, 'utf8'))[1])",
        "const {shots} = JSON.parse(readFileSync(run.input_path, 'utf8'))",
        "const zeros = '0'.repeat(width)",
        "writeFileSync(run.output_path, JSON.stringify({counts: {[zeros]: Math.ceil(shots / 2), [zeros.slice(1) + '1']: Math.floor(shots / 2)}}))",
        '',
      ].join('\n'),
    )
    chmodSync(script, 0o755)
    const running = agent(setup, 'wrong-answer', {OUTPOST_JOBS_KINDS: '["quantum_circuit"]', OUTPOST_JOBS_EXECUTOR_QUANTUM_CIRCUIT: 'script', OUTPOST_JOBS_SCRIPT_COMMAND: script})
    const renter = renterClient(market.endpoint, generateKeyPair())
    await openExampleJobs(renter, 'ghz', 6, {maxAttempts: 1})
    await settled(dataDir, 150_000, running.logFile)
    await stopAgent(running)

    const {jobs, leases, balances} = readJobMarket(dataDir)
    const trapLeases = leases.filter((lease) => lease.trap === 1)
    expect(trapLeases.length).toBe(3)
    expect(trapLeases.map((lease) => [lease.status, lease.reason])).toEqual(trapLeases.map(() => ['rejected', 'trap_failed']))
    expect(leases.filter((lease) => lease.trap === 0).every((lease) => lease.status === 'accepted')).toBe(true)
    expect(jobs.filter((job) => job.trap === 1).every((job) => job.status === 'failed')).toBe(true)
    const forfeited = sumMicro(trapLeases.map((lease) => lease.forfeited_micro))
    expect(forfeited).toBe(3n * 2_000_000n)
    const stake = balances(setup.providerPubkey)
    expect(BigInt(stake.staked_micro)).toBe(25_000_000_000n - forfeited)
    expect(stake.locked_micro).toBe('0')
    expect(BigInt(stake.rewards_pending_micro)).toBe(6n * 1_500_000n)
  })

  it('refuses a result signed by another key, and one whose signature was forged for the lease holder', async () => {
    const {process: market} = await devnet('forged', '0')
    const setup = await provider(market.endpoint)
    const agentClient = client(market.endpoint, setup.agentKey)
    await new ProviderApi(agentClient, setup.providerPubkey).heartbeat({
      version: '0.1.0',
      provisioner_type: 'local',
      capabilities: ['job:quantum_circuit'],
      active_contracts: 0,
      capacity: {cpu_cores: 2, memory_mb: 2048, storage_gb: 0, gpu_count: 0},
    })
    const [jobId] = await openExampleJobs(renterClient(market.endpoint, generateKeyPair()), 'ghz', 1)
    const jobs = new JobsApi(agentClient, setup.providerPubkey)
    const lease = await jobs.lease(jobId ?? '')
    const job = lease.job
    if (!job) throw new Error('the devnet sends the job with its lease')
    // The GHZ example: 5 qubits, 256 shots.
    const output = Buffer.from(JSON.stringify({counts: {'00000': 128, '11111': 128}}))
    const fields = {
      job_id: lease.job_id,
      lease_id: lease.lease_id,
      program_digest: job.program.digest,
      input_digest: job.input.digest,
      output: {digest: sha256Hex(output), size_bytes: output.length, data_b64: output.toString('base64')},
      started_at: Date.now() - 100,
      finished_at: Date.now(),
    }
    const refusal = (envelope: Parameters<JobsApi['submitResult']>[1]) =>
      jobs.submitResult(lease.lease_id, envelope).then(
        () => undefined,
        (error: unknown) => error,
      )
    const byAnother = await refusal(signResultEnvelope(generateKeyPair(), fields))
    expect(byAnother).toBeInstanceOf(ApiError)
    expect(byAnother).toMatchObject({status: 400, apiCode: 'invalid_body', details: [expect.objectContaining({field: 'signer'})]})
    const forged = {...signResultEnvelope(generateKeyPair(), fields), signer: toHex(setup.agentKey.publicKey)}
    expect(await refusal(forged)).toMatchObject({status: 400, details: [expect.objectContaining({field: 'signature'})]})
    // Neither took the lease: the holder's own signature is accepted.
    expect(await jobs.submitResult(lease.lease_id, signResultEnvelope(setup.agentKey, fields))).toMatchObject({verdict: 'accepted'})
  })

  const CRASH_JOBS = Number(process.env.OUTPOST_E2E_CRASH_JOBS ?? 16)
  const KILLS = Number(process.env.OUTPOST_E2E_CRASH_KILLS ?? 5)

  it(`killed with SIGKILL ${KILLS} times during ${CRASH_JOBS} jobs: no job leased twice at once, no result lost, no lease with two different results`, {timeout: 300_000}, async () => {
    const {process: market, dataDir} = await devnet('crash')
    const setup = await provider(market.endpoint)
    const renter = renterClient(market.endpoint, generateKeyPair())
    // Mostly circuits (a tenth of a second each once the simulator is up), so the kills land at every step: leasing,
    // running, signing, submitting; two proofs (seconds each) are killed mid-run.
    await openExampleJobs(renter, 'ghz', CRASH_JOBS - 2)
    await openExampleJobs(renter, 'multiplier', 2)
    const stateDir = join(setup.configDir, 'state')
    for (let round = 0; round < KILLS; round++) {
      const running = agent(setup, 'crash')
      // At work (under load the agent's start alone can take longer than any fixed delay): a run started, or, every
      // other round, a result accepted, so later kills land in a steady stream of leasing, running and submitting.
      const trigger = round % 2 === 0 ? 'running the job' : 'result accepted'
      const before = logged(running, trigger)
      // Or every job is done already (the earlier rounds let them finish): nothing is left to cut short.
      await waitFor(() => logged(running, trigger) > before || allSettled(dataDir), 60_000, 50)
      await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 600)))
      running.kill('SIGKILL')
      await running.exited
    }
    const last = agent(setup, 'crash')
    await settled(dataDir, 240_000, last.logFile)
    await stopAgent(last)

    const {jobs, leases} = readJobMarket(dataDir)
    expect(jobs.filter((job) => job.status !== 'completed')).toEqual([])
    for (const job of jobs) {
      const own = leases.filter((lease) => lease.job_id === job.job_id)
      expect(own.filter((lease) => lease.status === 'accepted')).toHaveLength(1)
      for (let index = 1; index < own.length; index++) {
        const previous = own[index - 1]
        expect(previous?.ended_at, `job ${job.job_id}: lease ${own[index]?.lease_id} taken while ${previous?.lease_id} was live`).not.toBeNull()
        expect(previous?.ended_at ?? Number.POSITIVE_INFINITY).toBeLessThanOrEqual(own[index]?.leased_at ?? 0)
      }
    }
    const signed = signedEnvelopes(stateDir)
    for (const lease of leases.filter((candidate) => candidate.envelope !== null)) {
      const versions = new Set(signed.get(lease.lease_id))
      expect(versions.size, `lease ${lease.lease_id}: ${versions.size} different signed results`).toBe(1)
      expect(canonicalJson(JSON.parse(lease.envelope ?? 'null'))).toBe([...versions][0])
    }
    expect(outboxEntries(stateDir)).toEqual([])
  })

  it('a lease that expires (its agent stopped) goes back to open, and an agent of another provider completes it', {timeout: 180_000}, async () => {
    const {process: market, dataDir} = await devnet('expiry', '0')
    const first = await provider(market.endpoint)
    const second = await provider(market.endpoint)
    const renter = renterClient(market.endpoint, generateKeyPair())
    const stuck = agent(first, 'expiry-first', {OUTPOST_JOBS_KINDS: '["zk_proof"]'})
    const [jobId] = await openExampleJobs(renter, 'multiplier', 1, {leaseSeconds: 3})
    await waitFor(() => logged(stuck, 'job leased') > 0, 60_000, 20)
    // Stopped, not killed: the process holds its lease and never renews it.
    stuck.kill('SIGSTOP')
    const expired = await waitFor(() => readJobMarket(dataDir).leases.some((lease) => lease.status === 'expired'), 30_000, 200)
    expect(expired).toBe(true)
    expect(readJobMarket(dataDir).jobs.find((job) => job.job_id === jobId)?.status).toBe('open')

    const other = agent(second, 'expiry-second', {OUTPOST_JOBS_KINDS: '["zk_proof"]'})
    await settled(dataDir, 120_000, other.logFile)
    await stopAgent(other)
    const {jobs, leases, balances} = readJobMarket(dataDir)
    expect(jobs.map((job) => job.status)).toEqual(['completed'])
    expect(leases.map((lease) => [lease.provider_pubkey, lease.status])).toEqual([
      [first.providerPubkey, 'expired'],
      [second.providerPubkey, 'accepted'],
    ])
    // Half the collateral of an expired lease is forfeited (§12).
    expect(balances(first.providerPubkey)).toMatchObject({staked_micro: String(25_000_000_000 - 1_000_000), locked_micro: '0'})
    expect(balances(second.providerPubkey)).toMatchObject({staked_micro: '25000000000', rewards_pending_micro: '1500000'})
  })

  it('declines a job under the price floor or one it cannot finish in time, and fails early (retryable) a run that outlives its deadline', {timeout: 120_000}, async () => {
    const {process: market, dataDir} = await devnet('deadlines', '0')
    const setup = await provider(market.endpoint)
    const stateDir = join(setup.configDir, 'state')
    const ghz = readFileSync(templatePath('jobs/ghz/ghz.qasm'))
    // This machine's speed book says the GHZ program takes 10 minutes with this executor.
    mkdirSync(stateDir, {recursive: true, mode: 0o700})
    writeFileSync(
      join(stateDir, 'executor-speed.json'),
      JSON.stringify({version: 1, machine: {}, programs: {[`script:${sha256Hex(ghz)}`]: {ms: 600_000, samples: 3, updated_at: Date.now()}}}),
    )
    const script = join(temp, 'slow.sh')
    writeFileSync(script, '#!/bin/sh\nexec sleep 60\n')
    chmodSync(script, 0o755)
    const otherCircuit = join(temp, 'other.qasm')
    writeFileSync(otherCircuit, `// another program, never run here\n${ghz.toString('utf8')}`)
    const renter = renterClient(market.endpoint, generateKeyPair())
    const [cheap] = await openExampleJobs(renter, 'ghz', 1, {reward: '0.5'})
    const [slow] = await openExampleJobs(renter, 'ghz', 1, {reward: '1.5', deadlineSeconds: 120})
    const running = agent(setup, 'deadlines', {
      OUTPOST_JOBS_KINDS: '["quantum_circuit"]',
      OUTPOST_JOBS_EXECUTOR_QUANTUM_CIRCUIT: 'script',
      OUTPOST_JOBS_SCRIPT_COMMAND: script,
      OUTPOST_JOBS_SCRIPT_KILL_GRACE_SECONDS: '1',
      OUTPOST_JOBS_MIN_REWARD_QUANTUM_CIRCUIT: '1',
    })
    await waitFor(() => logged(running, 'job declined') >= 2, 60_000, 100)
    const declined = running.logLines().filter((line) => line.msg === 'job declined')
    expect(declined.find((line) => line.job_id === cheap)?.reason).toContain('under the floor of 1')
    expect(declined.find((line) => line.job_id === slow)?.reason).toContain("can't finish before its deadline")

    const late = await submitJob(renter, {
      programFile: otherCircuit,
      kind: 'quantum_circuit',
      shots: 256,
      reward: {mode: 'fixed', amount: '1.5'},
      collateral: '2',
      deadlineSeconds: 8,
      leaseSeconds: 60,
      maxAttempts: 3,
      resources: {cpu_cores: 1, memory_mb: 256, gpu_count: 0},
      requiresAttestation: false,
    })
    const failed = await waitFor(() => readJobMarket(dataDir).leases.some((lease) => lease.job_id === late.job_id && lease.status === 'failed'), 60_000, 200)
    expect(failed, readFileSync(running.logFile, 'utf8').slice(-3000)).toBe(true)
    await stopAgent(running)
    const {jobs, leases, balances} = readJobMarket(dataDir)
    expect(leases.map((lease) => [lease.job_id, lease.status, lease.reason])).toEqual([[late.job_id, 'failed', 'the run did not finish before the deadline']])
    expect(jobs.filter((job) => job.job_id !== late.job_id).map((job) => job.status)).toEqual(['open', 'open'])
    // A failed lease forfeits nothing: another provider may still take the job while time remains.
    expect(balances(setup.providerPubkey)).toMatchObject({staked_micro: '25000000000', locked_micro: '0'})
  })
})
