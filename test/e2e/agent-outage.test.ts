import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  fastAgentEnv,
  initProvider,
  instanceProcesses,
  killInstances,
  metricsUrl,
  renter,
  startAgent,
  startDevnet,
  waitFor,
  type Devnet,
  type ProviderSetup,
} from '../support/marketplace.js'
import {outboxEntries} from '../support/agent-run.js'

/** The marketplace goes away for 20 s (its port refuses connections) and comes back with its data: the agent recovers on its own. */
const OUTAGE_MS = Number(process.env.OUTPOST_E2E_OUTAGE_MS ?? 20_000)

let devnet: Devnet
let provider: ProviderSetup
const ids: string[] = []
const logDir = mkdtempSync(join(tmpdir(), 'outpost-agent-outage-'))

beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
})

afterAll(async () => {
  killInstances(ids)
  await devnet?.stop()
  rmSync(provider?.configDir ?? '/nonexistent', {recursive: true, force: true})
  rmSync(logDir, {recursive: true, force: true})
})

async function metric(metrics: string, name: string): Promise<number> {
  const text = await (await fetch(metrics)).text()
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN)
}

const outboxDepth = (metrics: string) => metric(metrics, 'outpost_agent_outbox_depth')

describe('outpost run through a marketplace outage', () => {
  it('keeps its reports in the outbox while the devnet is down, then recovers and drains it', {timeout: 90_000}, async () => {
    const agent = startAgent(fastAgentEnv(provider.configDir), join(logDir, 'agent.log'))
    const tail = () => readFileSync(agent.logFile, 'utf8').split('\n').slice(-40).join('\n')
    const buyer = renter(devnet.endpoint)
    const provisioned = async (list: string[]) => (await Promise.all(list.map((id) => buyer.show(id)))).every((contract) => ['provisioned', 'active'].includes(contract.status))
    try {
      const metrics = await metricsUrl(agent)
      for (let index = 0; index < 5; index++) ids.push((await buyer.create(provider.offeringId)).contract_id)
      expect(await waitFor(() => provisioned(ids), 20_000), tail()).toBe(true)
      // The agent has seen them as active (they are what it reports usage for) before the marketplace goes away.
      expect(await waitFor(async () => (await metric(metrics, 'outpost_agent_active_contracts')) >= 5, 10_000)).toBe(true)

      // New work arrives, and the marketplace disappears while the agent is on it.
      for (let index = 0; index < 5; index++) ids.push((await buyer.create(provider.offeringId)).contract_id)
      await devnet.pause()
      const outageStart = Date.now()
      // Usage records (every 2 s) and any unsent provisioning reports pile up in the outbox, durably.
      expect(await waitFor(async () => (await outboxDepth(metrics)) > 0, OUTAGE_MS), tail()).toBe(true)
      const stateDir = join(provider.configDir, 'state')
      expect(outboxEntries(stateDir).length).toBeGreaterThan(0)
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, OUTAGE_MS - (Date.now() - outageStart))))
      expect(agent.logLines().some((line) => line.level === 40 && /failed: retrying with backoff|kept in the outbox/.test(String(line.msg)))).toBe(true)

      await devnet.resume()
      const recoveredAt = Date.now()
      expect(await waitFor(() => provisioned(ids), 30_000, 300), tail()).toBe(true)
      expect(await waitFor(async () => (await outboxDepth(metrics)) === 0, 20_000), tail()).toBe(true)
      const recoverySeconds = (Date.now() - recoveredAt) / 1000
      expect(recoverySeconds).toBeLessThan(30)

      // Long poll works again: a contract made now is provisioned promptly.
      const after = (await buyer.create(provider.offeringId)).contract_id
      ids.push(after)
      expect(await waitFor(() => provisioned([after]), 10_000, 100)).toBe(true)

      const processes = instanceProcesses(ids)
      for (const id of ids) expect(processes.get(id)?.length ?? 0, id).toBe(1)
    } finally {
      agent.kill('SIGTERM')
    }
    expect((await agent.exited).code).toBe(0)
    const log = readFileSync(join(logDir, 'agent.log'), 'utf8')
    expect(log).toMatch(/"msg":"the marketplace accepts reports again"/)
  })
})
