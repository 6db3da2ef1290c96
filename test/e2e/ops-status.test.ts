import Database from 'better-sqlite3'
import {spawn} from 'node:child_process'
import {copyFileSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {z} from 'zod'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {toHex} from '../../src/core/hex.js'
import {AGENT_PERMISSIONS, signDelegation} from '../../src/core/delegation.js'
import {createKeyFile} from '../../src/core/keys.js'
import {DATABASE_FILE_NAME} from '../../src/marketplace/database.js'
import {BANNER_SERVICE} from '../../src/provisioners/local/local-provisioner.js'
import {BIN, parseJson, runCli, TEST_PASSPHRASE} from '../support/cli.js'
import {
  client,
  fastAgentEnv,
  initProvider,
  killInstances,
  metricsUrl,
  renter,
  startAgent,
  startDevnet,
  waitFor,
  type Devnet,
  type ProviderSetup,
  type Renter,
} from '../support/marketplace.js'
import {HAVE_SCRIPT, runInTerminal} from '../support/terminal.js'

/**
 * The operator's every day, run as a user would against a real devnet: /readyz says whether the agent can work now,
 * `outpost status` shows the agent, the marketplace and what needs attention, `provider pause|resume` stops and
 * restores new contracts, and `outpost drain` finishes what runs and stops the agent cleanly.
 */

let devnet: Devnet
let provider: ProviderSetup
let buyer: Renter
const ids: string[] = []
const dirs: string[] = []

beforeAll(async () => {
  devnet = await startDevnet({heartbeatSeconds: 10})
  // Below the first tier: 2 contracts at once, so a third waits on the tier limit.
  provider = await initProvider(devnet.endpoint, {stake: '1'})
  buyer = renter(devnet.endpoint)
  dirs.push(provider.configDir)
})

afterAll(async () => {
  killInstances(ids)
  await devnet?.stop()
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

const Readyz = z.object({ready: z.boolean(), reasons: z.array(z.object({code: z.string(), message: z.string()})), status: z.string(), version: z.string()})

async function readyz(metrics: string): Promise<{status: number; body: z.infer<typeof Readyz>}> {
  const response = await fetch(metrics.replace('/metrics', '/readyz'))
  return {status: response.status, body: Readyz.parse(await response.json())}
}

interface StatusJson {
  agent: {running: boolean; ready: boolean | null; version: string | null; status: string | null; not_ready_reasons: {code: string}[]; outbox_depth: number}
  marketplace: {reachable: boolean; provider_status: string | null; tier_limited_contracts: number | null; contracts_by_status: Record<string, number> | null; delegation: {expires_at: number | null} | null}
  money: {staked: string; tier: string; rewards_pending: string; usage_last_day: {records: number}} | null
  attention: {code: string; message: string; command: string}[]
}

function logDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-ops-status-'))
  dirs.push(dir)
  return dir
}

const env = (configDir: string) => ({...fastAgentEnv(configDir), OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE})

describe('readiness, status, pause and resume (built CLI, real devnet)', () => {
  it('readiness flips to 503 while the devnet is down and back to 200 when it returns; status shows the tier-limited contract; pause stops new contracts and resume restores them', {timeout: 120_000}, async () => {
    const agent = startAgent(fastAgentEnv(provider.configDir), join(logDir(), 'agent.log'))
    try {
      const metrics = await metricsUrl(agent)
      expect(await waitFor(async () => (await readyz(metrics)).status === 200, 20_000)).toBe(true)
      expect((await readyz(metrics)).body).toMatchObject({ready: true, reasons: [], status: 'active'})
      // Liveness stays plain.
      expect(await (await fetch(metrics.replace('/metrics', '/healthz'))).text()).toBe('ok\n')

      for (let index = 0; index < 3; index++) ids.push((await buyer.create(provider.offeringId)).contract_id)
      const provisioned = async () => (await Promise.all(ids.map((id) => buyer.show(id)))).filter((contract) => ['provisioned', 'active'].includes(contract.status)).length
      expect(await waitFor(async () => (await provisioned()) === 2, 30_000)).toBe(true)

      const json = await runCli(['status', '--json'], {env: env(provider.configDir)})
      expect(json.exitCode, json.stderr).toBe(0)
      const report = parseJson<StatusJson>(json)
      expect(report.agent).toMatchObject({running: true, ready: true, status: 'active'})
      expect(report.agent.version).toMatch(/^\d+\.\d+\.\d+/)
      expect(report.marketplace).toMatchObject({reachable: true, provider_status: 'active', tier_limited_contracts: 1})
      expect(Object.values(report.marketplace.contracts_by_status ?? {}).reduce((sum, count) => sum + count, 0)).toBe(2)
      expect(report.money).toMatchObject({staked: '1', tier: 'unstaked'})
      expect(report.attention).toContainEqual(expect.objectContaining({code: 'tier_limit', command: expect.stringMatching(/^outpost stake deposit 999 /)}))

      // Off a terminal: the same view as plain lines.
      const plain = await runCli(['status'], {env: env(provider.configDir)})
      expect(plain.exitCode, plain.stderr).toBe(0)
      expect(plain.stdout).toMatch(/running +yes, pid \d+; ready/)
      expect(plain.stdout).toMatch(/1 held back by the tier limit/)
      expect(plain.stdout).toContain('→ outpost stake deposit 999')

      // On a terminal, and --watch off a terminal: one line per refresh until SIGTERM, exit 0.
      if (HAVE_SCRIPT) {
        const shown = await runInTerminal(['status'], {env: env(provider.configDir)})
        expect(shown.exitCode, shown.output).toBe(0)
        expect(shown.output).toContain('Agent (this host)')
        expect(shown.output).toContain('Needs attention')
        // --watch on a terminal redraws the whole view until Ctrl-C, then exits 0.
        const watched = await runInTerminal(['status', '--watch', '1'], {env: env(provider.configDir), steps: [{waitFor: /refreshing every 1 s[\s\S]*refreshing every 1 s/, send: '\u0003'}]})
        expect(watched.exitCode, watched.output).toBe(0)
        expect(watched.output.match(/Agent \(this host\)/g)?.length).toBeGreaterThanOrEqual(2)
      }
      const watchLines = await watchOffTerminal(provider.configDir, 2)
      expect(watchLines.code).toBe(0)
      expect(watchLines.lines.length).toBeGreaterThanOrEqual(2)
      for (const line of watchLines.lines) expect(line).toMatch(/agent=running .*tier_limited=1 attention=.*tier_limit/)
      // With --json: one JSON object per refresh.
      const watchJson = await watchOffTerminal(provider.configDir, 2, ['--json'])
      expect(watchJson.code).toBe(0)
      for (const line of watchJson.lines) expect((JSON.parse(line) as StatusJson).marketplace.tier_limited_contracts).toBe(1)

      // The marketplace goes away: not ready, with the reason; status says so and still answers.
      await devnet.pause()
      try {
        expect(await waitFor(async () => (await readyz(metrics)).status === 503, 30_000)).toBe(true)
        const down = await readyz(metrics)
        expect(down.body.ready).toBe(false)
        expect(down.body.reasons.map((reason) => reason.code)).toContain('marketplace_unreachable')
        const whileDown = parseJson<StatusJson>(await runCli(['status', '--json'], {env: env(provider.configDir)}))
        expect(whileDown.marketplace.reachable).toBe(false)
        expect(whileDown.agent.ready).toBe(false)
        expect(whileDown.attention).toContainEqual(expect.objectContaining({code: 'agent_marketplace_unreachable', command: 'outpost doctor'}))
      } finally {
        await devnet.resume()
      }
      expect(await waitFor(async () => (await readyz(metrics)).status === 200, 30_000)).toBe(true)

      // Pause: no new contracts (the marketplace refuses them); status names the fix; resume restores them.
      const mainKeyFile = join(provider.configDir, 'provider-main.key')
      const paused = await runCli(['provider', 'pause', '--main-key-file', mainKeyFile, '--reason', 'host maintenance', '--json'], {env: env(provider.configDir)})
      expect(paused.exitCode, paused.stderr).toBe(0)
      expect(parseJson(paused)).toMatchObject({status: 'paused', reason: 'host maintenance'})
      await expect(buyer.create(provider.offeringId)).rejects.toMatchObject({apiCode: 'provider_paused'})
      const whilePaused = parseJson<StatusJson>(await runCli(['status', '--json'], {env: env(provider.configDir)}))
      expect(whilePaused.attention).toContainEqual(expect.objectContaining({code: 'provider_paused', command: expect.stringMatching(/^outpost provider resume/)}))

      const resumed = await runCli(['provider', 'resume', '--main-key-file', mainKeyFile], {env: env(provider.configDir)})
      expect(resumed.exitCode, resumed.stderr).toBe(0)
      expect(resumed.stdout).toMatch(/is active/)
      const after = await buyer.create(provider.offeringId)
      ids.push(after.contract_id)
      expect(after.status).toBe('accepted')

      // Pausing takes the main key: without one the remedy says so.
      const noKey = await runCli(['provider', 'pause'], {env: env(provider.configDir)})
      expect(noKey.exitCode).toBe(2)
      expect(noKey.stderr).toMatch(/--main-key-file/)
    } finally {
      agent.kill('SIGTERM')
      await agent.exited
    }
  })

  it('an expired delegation makes /readyz 503 (key refused); status warns of the expiry before, with the command that fixes it', {timeout: 90_000}, async () => {
    const configDir = mkdtempSync(join(tmpdir(), 'outpost-ops-status-agent-'))
    dirs.push(configDir)
    copyFileSync(join(provider.configDir, 'outpost.toml'), join(configDir, 'outpost.toml'))
    const {key: agentKey} = createKeyFile(join(configDir, 'agent.key'), 'agent')
    const expiresAt = Date.now() + 12_000
    const terms = {agentPubkey: toHex(agentKey.publicKey), permissions: [...AGENT_PERMISSIONS], expiresAt, label: 'short-lived'}
    await client(devnet.endpoint, provider.mainKey).post(`/providers/${provider.providerPubkey}/agent-delegations`, {
      schema: z.unknown(),
      body: {agent_pubkey: terms.agentPubkey, permissions: terms.permissions, expires_at: expiresAt, label: terms.label, signature: signDelegation(provider.mainKey, terms)},
    })
    const before = parseJson<StatusJson>(await runCli(['status', '--json'], {env: env(configDir)}))
    expect(before.marketplace.delegation?.expires_at).toBe(expiresAt)
    expect(before.attention).toContainEqual(expect.objectContaining({code: 'delegation_expiring', command: expect.stringMatching(/^outpost keys rotate/)}))
    expect(before.attention).toContainEqual(expect.objectContaining({code: 'agent_not_running'}))

    const agent = startAgent(fastAgentEnv(configDir), join(logDir(), 'agent.log'))
    try {
      const metrics = await metricsUrl(agent)
      const refusedNow = async () => {
        const answer = await readyz(metrics)
        return answer.status === 503 && answer.body.reasons.some((reason) => reason.code === 'key_refused')
      }
      expect(await waitFor(refusedNow, 40_000, 500)).toBe(true)
      const refused = await readyz(metrics)
      expect(refused.body.reasons.find((reason) => reason.code === 'key_refused')?.message).toMatch(/delegation_expired/)
      const after = parseJson<StatusJson>(await runCli(['status', '--json'], {env: env(configDir)}))
      expect(after.attention).toContainEqual(expect.objectContaining({code: 'agent_key_refused', command: expect.stringMatching(/^outpost keys rotate/)}))
    } finally {
      agent.kill('SIGTERM')
      await agent.exited
    }
    // With the agent stopped, status learns it from the marketplace's refusal of the key's own reads.
    const stopped = parseJson<StatusJson>(await runCli(['status', '--json'], {env: env(configDir)}))
    expect(stopped.attention).toContainEqual(expect.objectContaining({code: 'agent_key_refused', message: expect.stringContaining('delegation_expired')}))
  })
})

describe('drain (built CLI, real devnet)', () => {
  it('outpost drain: the agent heartbeats draining, takes no new contract, finishes the one it provisions, and exits 0', {timeout: 90_000}, async () => {
    const none = await runCli(['drain', '--json'], {env: env(provider.configDir)})
    expect(none.exitCode).toBe(4)
    expect(parseJson<{error: {code: string}}>(none).error.code).toBe('agent_not_running')

    // A workload that takes 5 s to come up: the drain is asked for while it is being provisioned.
    const slow = JSON.stringify(['/bin/sh', '-c', `sleep 5; exec ${process.execPath} ${BANNER_SERVICE}`])
    const agent = startAgent(fastAgentEnv(provider.configDir, {OUTPOST_PROVISIONER_LOCAL_COMMAND: slow}), join(logDir(), 'drain.log'))
    await metricsUrl(agent)
    // Room under the tier: end what the first test left running.
    for (const id of ids.splice(0)) {
      const contract = await buyer.show(id)
      if (['accepted', 'provisioning', 'provisioned', 'active'].includes(contract.status)) await buyer.cancel(id)
      ids.push(id)
    }
    const running = await buyer.create(provider.offeringId)
    ids.push(running.contract_id)
    expect(await waitFor(() => agent.logLines().some((line) => line.msg === 'provisioning' && line.contract_id === running.contract_id), 30_000)).toBe(true)

    const drain = runCli(['drain', '--json', '--timeout', '60s'], {env: env(provider.configDir)})
    expect(await waitFor(() => heartbeatStatus(devnet.dataDir) === 'draining', 10_000, 100)).toBe(true)
    const late = await buyer.create(provider.offeringId)
    ids.push(late.contract_id)

    const drained = await drain
    expect(drained.exitCode, drained.stderr).toBe(0)
    expect(parseJson(drained)).toMatchObject({pid: agent.pid})
    expect((await agent.exited).code).toBe(0)
    expect(['provisioned', 'active']).toContain((await buyer.show(running.contract_id)).status)
    expect((await buyer.show(late.contract_id)).status).toBe('accepted')
    expect(agent.logLines().some((line) => String(line.msg).startsWith('draining'))).toBe(true)
    expect(agent.logLines().some((line) => line.msg === 'interrupted: checkpointed for the next run')).toBe(false)

    // The next run heartbeats active again and takes the contract that waited.
    const next = startAgent(fastAgentEnv(provider.configDir), join(logDir(), 'next.log'))
    try {
      expect(await waitFor(async () => ['provisioned', 'active'].includes((await buyer.show(late.contract_id)).status), 30_000)).toBe(true)
      expect(heartbeatStatus(devnet.dataDir)).toBe('active')
    } finally {
      next.kill('SIGTERM')
      await next.exited
    }
  })
})

function heartbeatStatus(dataDir: string): string | null {
  const db = new Database(join(dataDir, DATABASE_FILE_NAME), {readonly: true, fileMustExist: true})
  try {
    return db.prepare<[string], string | null>('SELECT heartbeat_status FROM providers WHERE pubkey = ?').pluck().get(provider.providerPubkey) ?? null
  } finally {
    db.close()
  }
}

/** `outpost status --watch 1` off a terminal until `count` lines came, then SIGTERM. */
async function watchOffTerminal(configDir: string, count: number, args: string[] = []): Promise<{code: number | null; lines: string[]}> {
  const child = spawn(process.execPath, [BIN, 'status', '--watch', '1', ...args], {env: {...process.env, ...env(configDir), NO_COLOR: '1', CI: 'true'}, stdio: ['ignore', 'pipe', 'pipe']})
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await waitFor(() => output.split('\n').filter((line) => line.trim() !== '').length >= count, 30_000)
  child.kill('SIGTERM')
  const code = await exited
  return {code, lines: output.split('\n').filter((line) => line.trim() !== '')}
}
