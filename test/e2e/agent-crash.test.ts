import {mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {readJournal} from '../../src/agent/journal.js'
import {openSealedCredentials} from '../../src/core/sealing.js'
import {toHex} from '../../src/core/hex.js'
import {
  fastAgentEnv,
  initProvider,
  instanceProcesses,
  killInstances,
  renter,
  startAgent,
  startDevnet,
  waitFor,
  type AgentProcess,
  type Devnet,
  type ProviderSetup,
} from '../support/marketplace.js'
import {billing, outboxEntries, readMarketplace} from '../support/agent-run.js'

/**
 * The agent SIGKILLed at random moments while it works through many contracts, restarted each time: every contract
 * ends provisioned exactly once, no report is lost, and the usage billed covers the time each contract was
 * provisioned. 100 contracts and 12 kills take about 60 s here; OUTPOST_E2E_CRASH_CONTRACTS and
 * OUTPOST_E2E_CRASH_KILLS change the counts.
 */
const CONTRACTS = Number(process.env.OUTPOST_E2E_CRASH_CONTRACTS ?? 100)
const KILLS = Number(process.env.OUTPOST_E2E_CRASH_KILLS ?? 12)

let devnet: Devnet
let provider: ProviderSetup
const ids: string[] = []
const logDir = mkdtempSync(join(tmpdir(), 'outpost-agent-crash-'))

beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
})

/** Lines of the shared log (every run appends to it) with one of these messages. */
function linesWith(logFile: string, messages: readonly string[]): number {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => messages.some((message) => line.includes(`"msg":"${message}"`))).length
}

/**
 * Waits until this run of the agent is at work (under load its start alone can take longer than a fixed delay, and a
 * kill then lands before it did anything): a contract provisioned or resumed since `before` lines of that kind.
 */
async function atWork(agent: AgentProcess, before: number): Promise<void> {
  await waitFor(() => linesWith(agent.logFile, WORK) > before, 30_000, 50)
}

const WORK = ['provisioning', 'resuming a contract the previous run started and did not finish']

afterAll(async () => {
  killInstances(ids)
  await devnet?.stop()
  rmSync(provider?.configDir ?? '/nonexistent', {recursive: true, force: true})
  rmSync(logDir, {recursive: true, force: true})
})

describe('outpost run killed with SIGKILL and restarted', () => {
  // 13 starts of the agent, 100 contracts provisioned and ended: 60 s on a quiet 2-core machine, 170 s at a load of 17.
  it(`provisions each of ${CONTRACTS} contracts exactly once and loses no report`, {timeout: 300_000}, async () => {
    // Small batches and little concurrency keep work in flight at every kill.
    const env = fastAgentEnv(provider.configDir, {OUTPOST_AGENT_MAX_CONCURRENT_PROVISIONS: '4'})
    const buyer = renter(devnet.endpoint)
    const logFile = join(logDir, 'agent.log')
    const cancelled: string[] = []
    writeFileSync(logFile, '')
    for (let round = 0; round < KILLS; round++) {
      const before = linesWith(logFile, WORK)
      const agent = startAgent(env, logFile)
      const batch = Math.ceil(CONTRACTS / KILLS)
      for (let index = 0; index < batch && ids.length < CONTRACTS; index++) ids.push((await buyer.create(provider.offeringId)).contract_id)
      if (round === Math.floor(KILLS / 2)) {
        // Cancel a few mid-run, some of them possibly mid-provisioning.
        for (const id of ids.slice(0, 5)) {
          await buyer.cancel(id).catch(() => undefined)
          cancelled.push(id)
        }
      }
      await atWork(agent, before)
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 1500))
      agent.kill('SIGKILL')
      await agent.exited
    }

    // The last run takes up what is left with more room (the small concurrency was for landing kills mid-work).
    const agent = startAgent({...env, OUTPOST_AGENT_MAX_CONCURRENT_PROVISIONS: '8'}, logFile)
    const statusOf = () => readMarketplace(devnet.dataDir).contracts
    const settled = await waitFor(() => {
      const contracts = statusOf()
      return ids.every((id) => {
        const status = contracts.get(id)?.status
        return cancelled.includes(id) ? status === 'terminated' : status === 'provisioned' || status === 'active'
      })
    }, 75_000, 300)
    expect(settled, `statuses: ${ids.map((id) => statusOf().get(id)?.status).join(',')}`).toBe(true)
    const statuses = new Map((await Promise.all(ids.map((id) => buyer.show(id)))).map((contract) => [contract.contract_id, contract]))

    // Exactly once, counted on the machine: one live workload per running contract, none for the cancelled.
    const processes = instanceProcesses(ids)
    for (const id of ids) expect(processes.get(id)?.length ?? 0, id).toBe(cancelled.includes(id) ? 0 : 1)
    const stateDir = join(provider.configDir, 'state')
    const records = readdirSync(join(stateDir, 'local')).filter((file) => file.endsWith('.json'))
    expect(records.sort()).toEqual(ids.filter((id) => !cancelled.includes(id)).map((id) => `outpost-${id}.json`).sort())

    // Every contract ends, and the agent stops cleanly once they have.
    for (const id of ids) if (!cancelled.includes(id)) await buyer.cancel(id)
    const ended = await waitFor(() => {
      const contracts = statusOf()
      return ids.every((id) => contracts.get(id)?.status === 'terminated')
    }, 75_000, 300)
    agent.kill('SIGTERM')
    expect((await agent.exited).code).toBe(0)
    expect(ended).toBe(true)
    expect(instanceProcesses(ids).size).toBe(0)

    // No report lost: the outbox is empty and the server's state is what the journal says was reported.
    expect(outboxEntries(stateDir)).toEqual([])
    const journal = readJournal(join(stateDir, 'journal.jsonl')).entries
    for (const id of ids) {
      const delivered = journal.flatMap((entry) => (entry.event === 'report_delivered' && entry.contract_id === id ? [entry] : []))
      expect(delivered.some((entry) => entry.kind === 'terminated'), id).toBe(true)
      if (!cancelled.includes(id)) expect(delivered.filter((entry) => entry.kind === 'provisioning').at(-1)?.status, id).toBe('provisioned')
      // At most one instance was ever created for it; restarts found it again instead.
      const createdHere = journal.filter((entry) => entry.event === 'instance_ready' && entry.contract_id === id && !entry.adopted)
      expect(createdHere.length, id).toBeLessThanOrEqual(1)
    }

    // The kills did land mid-work: restarts resumed unfinished contracts.
    const resumed = readFileSync(logFile, 'utf8').split('\n').filter((line) => line.includes('resuming a contract the previous run started'))
    expect(resumed.length).toBeGreaterThan(0)

    // The renter's credentials still open after all the restarts (sealed to the renter, never in clear).
    const sample = statuses.get(ids.find((id) => !cancelled.includes(id))!)!
    const credentials = openSealedCredentials(sample.instance!.sealed_credentials!, buyer.key.seed) as {password: string}
    const log = readFileSync(logFile, 'utf8')
    expect(log).not.toContain(credentials.password)
    expect(log).not.toContain(toHex(provider.agentKey.seed))
    expect(log).not.toContain(toHex(provider.mainKey.seed))
    expect(log).not.toContain(sample.instance!.sealed_credentials!)

    // What each contract was billed covers the time it was provisioned, across all the kills.
    const billed = billing(devnet.dataDir, ids)
    expect(billed.gaps).toEqual([])
    console.log(`crash run: ${JSON.stringify({contracts: ids.length, kills: KILLS, resumed: resumed.length, ...billed})}`)
  })
})
