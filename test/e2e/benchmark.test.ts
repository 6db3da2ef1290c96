import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {ApiClient} from '../../src/core/api/client.js'
import {requestChallenge, submitReport} from '../../src/core/api/benchmarks.js'
import {computeWorkDigest} from '../../src/core/benchmark-workload.js'
import {readKeyFile} from '../../src/core/keys.js'
import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {BIN, parseJson, REPO_ROOT, runCli, tempConfigDir, TEST_PASSPHRASE} from '../support/cli.js'
import {waitFor} from '../support/marketplace.js'

interface RunJson {
  provider_pubkey: string
  challenge_id: string
  work_digest: string
  machine: {cpu_threads: number; memory_mib: number}
  results: {
    quick: boolean
    cpu?: {single_core_events_per_second: number; all_cores_events_per_second: number; threads: number}
    memory?: {triad_mib_per_second: number; read_mib_per_second: number; write_mib_per_second: number}
    storage?: {path: string; direct_io: boolean; rand_read_iops: number; rand_write_iops: number; seq_read_mib_per_second: number; seq_write_mib_per_second: number}
    network?: {latency_ms_median: number; upload_mib_per_second: number | null; download_mib_per_second: number | null; throughput_method: string}
    gpu?: {gpus: unknown[]; note?: string}
  }
  submitted: boolean
  report?: {report_id: string; challenge_id: string; work_digest: string; verified: boolean; submitted_by: string}
}

let server: MarketplaceServer
let dataDir: string
let configDir: string
let env: Record<string, string>
let providerPubkey: string
let agentPubkey: string

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'outpost-devnet-'))
  server = await startMarketplace({dataDir, port: 0, host: '127.0.0.1', logError: () => undefined})
  configDir = tempConfigDir()
  env = {OUTPOST_CONFIG_DIR: configDir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
  expect((await runCli(['init', '--main-key', '--endpoint', server.endpoint], {env})).exitCode).toBe(0)
  const registered = await runCli(['register', '--json', '--name', 'Bench Co', '--contact-email', 'ops@bench.example', '--main-key-file', join(configDir, 'provider-main.key')], {env})
  expect(registered.exitCode, registered.stderr).toBe(0)
  ;({provider_pubkey: providerPubkey, agent_pubkey: agentPubkey} = parseJson<{provider_pubkey: string; agent_pubkey: string}>(registered))
})

afterAll(async () => {
  await server.stop()
  rmSync(dataDir, {recursive: true, force: true})
  rmSync(configDir, {recursive: true, force: true})
})

describe('outpost benchmark (built CLI, real devnet)', () => {
  it('run --submit with the agent key: measured figures, a report the devnet verified, listed by show', async () => {
    const result = await runCli(['benchmark', 'run', '--quick', '--submit', '--json'], {env})
    expect(result.exitCode, result.stderr).toBe(0)
    const run = parseJson<RunJson>(result)
    expect(run).toMatchObject({provider_pubkey: providerPubkey, submitted: true, results: {quick: true}})
    expect(run.report).toMatchObject({challenge_id: run.challenge_id, work_digest: run.work_digest, verified: true, submitted_by: agentPubkey})
    const {cpu, memory, storage, network, gpu} = run.results
    expect(cpu?.single_core_events_per_second).toBeGreaterThan(0)
    expect(cpu?.all_cores_events_per_second).toBeGreaterThan(0)
    expect(cpu?.threads).toBe(run.machine.cpu_threads)
    for (const figure of [memory?.triad_mib_per_second, memory?.read_mib_per_second, memory?.write_mib_per_second]) expect(figure).toBeGreaterThan(0)
    expect(storage).toMatchObject({path: join(configDir, 'state'), direct_io: true})
    for (const figure of [storage?.rand_read_iops, storage?.rand_write_iops, storage?.seq_read_mib_per_second, storage?.seq_write_mib_per_second]) expect(figure).toBeGreaterThan(0)
    expect(network?.latency_ms_median).toBeGreaterThan(0)
    expect(network?.upload_mib_per_second).toBeGreaterThan(0)
    // The devnet has the bulk routes: both directions measured on them.
    expect(network?.throughput_method).toBe('bulk')
    expect(network?.download_mib_per_second).toBeGreaterThan(0)
    // This machine has no NVIDIA driver: no GPU is reported, and the note says why.
    expect(gpu).toEqual({gpus: [], note: 'no NVIDIA GPU: nvidia-smi is not installed (no NVIDIA driver)'})

    const shown = await runCli(['benchmark', 'show', '--json'], {env})
    const reports = parseJson<{reports: {report_id: string; challenge_id: string}[]}>(shown).reports
    expect(reports).toEqual([expect.objectContaining({report_id: run.report?.report_id, challenge_id: run.challenge_id})])
    const table = await runCli(['benchmark', 'show'], {env})
    expect(table.stdout).toMatch(/cpu 1 \/ all \(ev\/s\)/)
    expect(table.stdout).toContain(String(cpu?.single_core_events_per_second))
  })

  it('plain progress lines without a terminal, the results table, and no report without --submit', async () => {
    const result = await runCli(['benchmark', 'run', '--type', 'cpu', '--duration', '100ms', '--main-key-file', join(configDir, 'provider-main.key')], {env})
    expect(result.exitCode, result.stderr).toBe(0)
    expect(result.stdout).toMatch(/^Fetch a challenge from the marketplace\.\.\.\n {2}[0-9a-f]{32}, valid until/)
    expect(result.stdout).toMatch(/CPU, one core\s+[\d.]+ events\/s\s+primes below 10000/)
    expect(result.stdout).not.toMatch(/memory|storage/)
    expect(result.stdout).toContain('not submitted: run with --submit to send the signed report')
    const reports = parseJson<{reports: unknown[]}>(await runCli(['benchmark', 'show', '--json'], {env})).reports
    expect(reports).toHaveLength(1)
  })

  it('refuses a reused challenge and a tampered work digest', async () => {
    const agent = new ApiClient({endpoint: server.endpoint, key: await readKeyFile(join(configDir, 'agent.key')), retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1}})
    const [{challenge_id: used}] = parseJson<{reports: [{challenge_id: string}]}>(await runCli(['benchmark', 'show', '--json'], {env})).reports
    const challenge = await requestChallenge(agent, providerPubkey)
    const digest = computeWorkDigest(challenge.seed)
    await expect(submitReport(agent, providerPubkey, {challenge_id: used, machine: {}, results: {}, work_digest: digest})).rejects.toMatchObject({status: 409, apiCode: 'challenge_used'})
    const tampered = digest.replace(/^./, (first) => (first === 'f' ? 'e' : 'f'))
    await expect(submitReport(agent, providerPubkey, {challenge_id: challenge.challenge_id, machine: {}, results: {}, work_digest: tampered})).rejects.toMatchObject({status: 400, apiCode: 'invalid_body'})
    // A digest computed for another challenge's seed is refused too: the work can't be prepared in advance.
    const other = await requestChallenge(agent, providerPubkey)
    await expect(submitReport(agent, providerPubkey, {challenge_id: other.challenge_id, machine: {}, results: {}, work_digest: digest})).rejects.toMatchObject({status: 400})
  })

  it('a challenge that expires while the benchmark runs is refused, with what to do', async () => {
    const expire = server.db.prepare('UPDATE benchmark_challenges SET expires_at = 0 WHERE provider_pubkey = ? AND used_at IS NULL AND expires_at > 0')
    // Challenges left unused by the tests before: expired now, so the next one to appear is this run's.
    expire.run(providerPubkey)
    const cli = execa('node', [BIN, 'benchmark', 'run', '--type', 'cpu', '--duration', '1500ms', '--submit'], {cwd: REPO_ROOT, env: {...env, CI: 'true', NO_COLOR: '1'}, reject: false})
    // Expire the run's challenge as soon as it exists (the CPU measurement takes seconds after that).
    expect(await waitFor(() => expire.run(providerPubkey).changes > 0, 20_000, 20)).toBe(true)
    const result = await cli
    expect(result.exitCode).toBe(1)
    expect(result.stderr).toMatch(/refused the report: .*409 challenge_expired/)
    expect(result.stderr).toContain('run `outpost benchmark run --submit` again')
  })
})
