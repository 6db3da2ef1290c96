import {mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {readJournal} from '../../src/agent/journal.js'
import type {Contract} from '../../src/core/api/schemas.js'
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
  type Devnet,
  type ProviderSetup,
} from '../helpers/marketplace.js'

/**
 * The agent SIGKILLed at random moments while it works through many contracts, restarted each time: every contract
 * ends provisioned exactly once and no report is lost. 100 contracts and 12 kills take about 30 s here;
 * OUTPOST_E2E_CRASH_CONTRACTS and OUTPOST_E2E_CRASH_KILLS change the counts.
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

afterAll(async () => {
  killInstances(ids)
  await devnet?.stop()
  rmSync(provider?.configDir ?? '/nonexistent', {recursive: true, force: true})
  rmSync(logDir, {recursive: true, force: true})
})

describe('outpost run killed with SIGKILL and restarted', () => {
  it(`provisions each of ${CONTRACTS} contracts exactly once and loses no report`, {timeout: 120_000}, async () => {
    // Small batches and little concurrency keep work in flight at every kill.
    const env = fastAgentEnv(provider.configDir, {OUTPOST_AGENT_MAX_CONCURRENT_PROVISIONS: '4'})
    const buyer = renter(devnet.endpoint)
    const logFile = join(logDir, 'agent.log')
    const cancelled: string[] = []
    for (let round = 0; round < KILLS; round++) {
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
      await new Promise((resolve) => setTimeout(resolve, 400 + Math.random() * 1600))
      agent.kill('SIGKILL')
      await agent.exited
    }

    const agent = startAgent(env, logFile)
    const statuses = new Map<string, Contract>()
    const settled = await waitFor(async () => {
      for (const id of ids) {
        const known = statuses.get(id)
        if (known && ['provisioned', 'active', 'terminated'].includes(known.status)) continue
        statuses.set(id, await buyer.show(id))
      }
      return ids.every((id) => {
        const status = statuses.get(id)?.status
        return cancelled.includes(id) ? status === 'terminated' : status === 'provisioned' || status === 'active'
      })
    }, 75_000, 300)
    agent.kill('SIGTERM')
    expect((await agent.exited).code).toBe(0)
    expect(settled, `statuses: ${ids.map((id) => statuses.get(id)?.status).join(',')}`).toBe(true)

    // Exactly once, counted on the machine: one live workload per running contract, none for the cancelled.
    const processes = instanceProcesses(ids)
    for (const id of ids) expect(processes.get(id)?.length ?? 0, id).toBe(cancelled.includes(id) ? 0 : 1)
    const stateDir = join(provider.configDir, 'state')
    const records = readdirSync(join(stateDir, 'local')).filter((file) => file.endsWith('.json'))
    expect(records.sort()).toEqual(ids.filter((id) => !cancelled.includes(id)).map((id) => `outpost-${id}.json`).sort())

    // No report lost: the outbox is empty and the server's state is what the journal says was reported.
    expect(readdirSync(join(stateDir, 'outbox')).filter((file) => file.endsWith('.json'))).toEqual([])
    const journal = readJournal(join(stateDir, 'journal.jsonl')).entries
    for (const id of ids) {
      const delivered = journal.flatMap((entry) => (entry.event === 'report_delivered' && entry.contract_id === id ? [entry] : []))
      const lastProvisioning = delivered.filter((entry) => entry.kind === 'provisioning').at(-1)
      const terminated = delivered.some((entry) => entry.kind === 'terminated')
      const server = statuses.get(id)!
      if (server.status === 'terminated') expect(terminated, id).toBe(true)
      else expect(lastProvisioning?.status, id).toBe('provisioned')
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
  })
})
