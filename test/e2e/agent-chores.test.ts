import {execFileSync} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync} from 'node:fs'
import {open} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'

import {openDispute} from '../../src/core/api/renter.js'
import {canonicalJson, sha256Hex} from '../../src/core/signing.js'
import {parseJson, runCli, TEST_PASSPHRASE} from '../support/cli.js'
import {client, fastAgentEnv, initProvider, killInstances, metricsUrl, renter, startAgent, startDevnet, waitFor, type Devnet, type ProviderSetup} from '../support/marketplace.js'

/**
 * The daemon's chores and the evidence that lasts, with the built CLI's `outpost run` against a real devnet: health
 * checks archived and proving uptime in `dispute evidence --auto`, archives pruned past [agent] archive_days, rewards
 * claimed by [agent] auto_claim, the delegation's expiry and the state disk's free bytes in /metrics.
 */

let devnet: Devnet
let provider: ProviderSetup
let env: Record<string, string>
const contractIds: string[] = []

beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
  env = {OUTPOST_CONFIG_DIR: provider.configDir, OUTPOST_MAIN_KEY_FILE: join(provider.configDir, 'provider-main.key'), OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
  // The delegation re-signed to end in 5 days: the metric has an expiry to show and the daemon one to warn about.
  const registered = await runCli(['register', '--name', 'E2E Compute', '--contact-email', 'ops@e2e.example', '--expires-in', '5d', '--json'], {env})
  expect(registered.exitCode, registered.stderr).toBe(0)
}, 60_000)

afterAll(async () => {
  killInstances(contractIds)
  await devnet?.stop()
  if (provider) rmSync(provider.configDir, {recursive: true, force: true})
})

describe('outpost run: chores and lasting evidence (built CLI, real devnet)', () => {
  it('archives health checks for dispute evidence, prunes old archives, claims rewards, and exports the new gauges', async () => {
    const stateDir = join(provider.configDir, 'state')
    // Archives of long-gone contracts: one last written 3 days ago (past archive_days = 2), one 1 day ago.
    const old = join(stateDir, 'health', 'aaaaaaaaaaaaaaaa.jsonl')
    const recent = join(stateDir, 'usage', 'bbbbbbbbbbbbbbbb.jsonl')
    for (const [file, daysAgo] of [[old, 3], [recent, 1]] as const) {
      mkdirSync(join(file, '..'), {recursive: true})
      writeFileSync(file, '{}\n', {mode: 0o600})
      const at = (Date.now() - daysAgo * 86_400_000) / 1000
      utimesSync(file, at, at)
    }

    const agent = startAgent(
      fastAgentEnv(provider.configDir, {
        OUTPOST_AGENT_ARCHIVE_DAYS: '2',
        OUTPOST_AGENT_AUTO_CLAIM: '2s',
        OUTPOST_AGENT_MAIN_KEY_FILE: 'provider-main.key',
        OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE,
      }),
      join(provider.configDir, 'agent.log'),
    )
    const logText = () => readFileSync(agent.logFile, 'utf8')
    const tenant = renter(devnet.endpoint)
    try {
      const url = await metricsUrl(agent)
      const contract = await tenant.create(provider.offeringId)
      contractIds.push(contract.contract_id)
      const healthArchive = join(stateDir, 'health', `${contract.contract_id}.jsonl`)
      expect(await waitFor(() => existsSync(healthArchive) && readFileSync(healthArchive, 'utf8').trim().split('\n').length >= 3, 40_000), logText()).toBe(true)

      // Pruned at start: the old archive is gone, the recent one and the live one stay.
      expect(existsSync(old)).toBe(false)
      expect(existsSync(recent)).toBe(true)

      const metrics = await (await fetch(url)).text()
      const expiry = Number(/^outpost_agent_delegation_expiry_timestamp_seconds (\S+)$/m.exec(metrics)?.[1])
      expect(Math.abs(expiry - (Date.now() + 5 * 86_400_000) / 1000)).toBeLessThan(600)
      expect(Number(/^outpost_agent_state_disk_free_bytes (\S+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0)
      expect(metrics).toMatch(/^outpost_agent_chores_total\{chore="archive_prune",result="ok"\} 1$/m)
      expect(agent.logLines()).toContainEqual(expect.objectContaining({msg: expect.stringContaining("the agent key's delegation ends within 7 days")}))

      // The served contract ends; its earnings are claimed by the daemon, not by a person.
      await tenant.cancel(contract.contract_id)
      const stake = () => client(devnet.endpoint, provider.agentKey).get(`/providers/${provider.providerPubkey}/stake`, {schema: StakeShape, public: true})
      const claimed = await waitFor(() => agent.logLines().some((line) => line.chore === 'auto_claim' && typeof line.claimed === 'string' && line.claimed !== '0'), 40_000)
      expect(claimed, logText()).toBe(true)
      expect((await stake()).rewards_pending).toBe('0')
      expect(await (await fetch(url)).text()).toMatch(/^outpost_agent_chores_total\{chore="auto_claim",result="ok"\} [1-9]/m)
    } finally {
      agent.kill('SIGTERM')
      await agent.exited
    }

    // The renter disputes; --auto proves uptime with the archived health checks.
    const contractId = contractIds[0] ?? ''
    const {dispute_id: disputeId} = await openDispute(client(devnet.endpoint, tenant.key), contractId, {type: 'sla_violation', description: 'it was down'})
    const preview = await runCli(['dispute', 'evidence', disputeId, '--auto', '--dry-run', '--json'], {env})
    expect(preview.exitCode, preview.stderr).toBe(0)
    const draft = parseJson<{draft: {evidence: {type: string; hash: string; description: string; data: HealthData}[]; notes: string[]}}>(preview).draft
    const health = draft.evidence.find((item) => item.type === 'health_checks')
    expect(health, JSON.stringify(draft.notes)).toBeDefined()
    expect(health?.data.checks).toBeGreaterThanOrEqual(3)
    expect(health?.data.by_status.healthy).toBeGreaterThanOrEqual(3)
    expect(health?.description).toMatch(/health checks of the instance by the agent, .*% healthy/)
    expect(health?.hash).toBe(sha256Hex(canonicalJson(health?.data)))
    const archived = readFileSync(join(provider.configDir, 'state', 'health', `${contractId}.jsonl`), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as {checked_at: number})
    expect(health?.data.checks_sha256).toBe(sha256Hex(canonicalJson(archived.sort((a, b) => a.checked_at - b.checked_at))))
  }, 150_000)

  it('stops cleanly (exit 0) on a SIGTERM that comes while it starts, its main key\'s passphrase still being read', async () => {
    const fifo = join(provider.configDir, 'passphrase.fifo')
    execFileSync('mkfifo', ['-m', '600', fifo])
    const agent = startAgent(
      fastAgentEnv(provider.configDir, {OUTPOST_AGENT_AUTO_CLAIM: '1h', OUTPOST_AGENT_MAIN_KEY_FILE: 'provider-main.key'}),
      join(provider.configDir, 'agent-stopped-at-start.log'),
      ['--passphrase-file', fifo],
    )
    // Opening the pipe to write waits for the agent to open it to read: it is then inside its start-up.
    const writer = await open(fifo, 'w')
    agent.kill('SIGTERM')
    await new Promise((resolve) => setTimeout(resolve, 200))
    await writer.writeFile(`${TEST_PASSPHRASE}\n`)
    await writer.close()
    const {code, signal} = await agent.exited
    expect({code, signal}, readFileSync(agent.logFile, 'utf8')).toEqual({code: 0, signal: null})
    expect(agent.logLines().find((line) => line.msg === 'stopping: no new work; finishing or checkpointing what is in progress')).toMatchObject({signal: 'SIGTERM'})
    rmSync(fifo)
  }, 60_000)

  it('refuses auto_claim without a main key file, before it starts anything', async () => {
    const result = await runCli(['run'], {env: {...env, OUTPOST_AGENT_AUTO_CLAIM: '24h'}})
    expect(result.exitCode).toBe(3)
    expect(result.stderr).toContain('[agent] auto_claim needs [agent] main_key_file')
    const bad = await runCli(['run'], {env: {...env, OUTPOST_AGENT_BENCHMARK_EVERY: 'weekly'}})
    expect(bad.exitCode).toBe(3)
    expect(bad.stderr).toContain('expected "off" or a duration with its unit')
  })
})

interface HealthData {
  checks: number
  by_status: {healthy: number; unhealthy: number; unknown: number}
  checks_sha256: string
}

const StakeShape = z.object({rewards_pending: z.string()})
