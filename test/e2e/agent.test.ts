import {mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {createConnection} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {readJournal} from '../../src/agent/journal.js'
import type {Contract} from '../../src/core/api/schemas.js'
import {toHex} from '../../src/core/hex.js'
import {openSealedCredentials} from '../../src/core/sealing.js'
import {
  addAgent,
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

/** The agent's main job, end to end: the built CLI against a real devnet on loopback, real local workloads. */

let devnet: Devnet
let provider: ProviderSetup
const contractIds: string[] = []
const configDirs: string[] = []
/** Everything a log line must never show: filled in as the tests make secrets. */
const secrets: string[] = []
const PASSPHRASE = 'correct horse battery staple e2e'
const logDir = mkdtempSync(join(tmpdir(), 'outpost-agent-logs-'))

beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
})

afterAll(async () => {
  killInstances(contractIds)
  await devnet?.stop()
  for (const dir of [provider?.configDir, ...configDirs]) if (dir) rmSync(dir, {recursive: true, force: true})
  rmSync(logDir, {recursive: true, force: true})
})

function talk(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({host: '127.0.0.1', port})
    let received = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      received += chunk
      if (received.split('\n').length === 2) socket.write(line + '\n')
    })
    socket.on('end', () => resolve(received))
    socket.on('error', reject)
  })
}

describe('outpost run against a devnet', () => {
  it('provisions 50 contracts created while it runs exactly once, and terminates the cancelled ones', async () => {
    const agent = startAgent(fastAgentEnv(provider.configDir), join(logDir, 'agent-50.log'))
    try {
      const metrics = await metricsUrl(agent)
      const renters = [renter(devnet.endpoint), renter(devnet.endpoint)]
      const created: {contract: Contract; by: (typeof renters)[number]}[] = []
      for (let index = 0; index < 50; index++) {
        const by = renters[index % 2]!
        created.push({contract: await by.create(provider.offeringId), by})
      }
      const ids = created.map(({contract}) => contract.contract_id)
      contractIds.push(...ids)

      const states = new Map<string, Contract>()
      const allProvisioned = await waitFor(async () => {
        for (const {contract, by} of created) {
          const current = states.get(contract.contract_id)
          if (current && (current.status === 'provisioned' || current.status === 'active')) continue
          states.set(contract.contract_id, await by.show(contract.contract_id))
        }
        return [...states.values()].every((contract) => contract.status === 'provisioned' || contract.status === 'active')
      }, 60_000, 250)
      expect(allProvisioned, `statuses: ${[...states.values()].map((contract) => contract.status).join(',')}`).toBe(true)

      // Exactly once: one live workload per contract, one instance created per contract in the journal.
      const processes = instanceProcesses(ids)
      expect(ids.map((id) => processes.get(id)?.length ?? 0)).toEqual(ids.map(() => 1))
      const journal = readJournal(join(provider.configDir, 'state', 'journal.jsonl')).entries
      for (const id of ids) {
        const created = journal.filter((entry) => entry.event === 'instance_ready' && entry.contract_id === id && !entry.adopted)
        expect(created, id).toHaveLength(1)
      }

      // The renter opens the sealed credentials and the instance answers with them.
      for (const {contract, by} of created) {
        const sealed = states.get(contract.contract_id)!.instance!.sealed_credentials!
        secrets.push(sealed, (openSealedCredentials(sealed, by.key.seed) as {password: string}).password)
      }
      const first = states.get(ids[0]!)!
      expect(first.instance?.external_id).toBe(`outpost-${ids[0]}`)
      const credentials = openSealedCredentials(first.instance!.sealed_credentials!, created[0]!.by.key.seed) as {password: string}
      expect(await talk(first.instance!.ssh_port, credentials.password)).toBe(`outpost-${ids[0]} ready\nwelcome\n`)
      expect(await talk(first.instance!.ssh_port, 'wrong')).toBe(`outpost-${ids[0]} ready\ndenied\n`)

      // Cancel ten: they are terminated (workload gone) and reported terminated; the others keep running.
      const cancelled = created.slice(0, 10)
      for (const {contract, by} of cancelled) await by.cancel(contract.contract_id)
      const allTerminated = await waitFor(async () => {
        const shown = await Promise.all(cancelled.map(({contract, by}) => by.show(contract.contract_id)))
        return shown.every((contract) => contract.status === 'terminated')
      }, 30_000, 250)
      expect(allTerminated).toBe(true)
      const after = instanceProcesses(ids)
      for (const {contract} of cancelled) expect(after.get(contract.contract_id)).toBeUndefined()
      for (const {contract} of created.slice(10)) expect(after.get(contract.contract_id)).toHaveLength(1)

      // Health made them active; metrics count what happened.
      expect(await waitFor(async () => (await created[20]!.by.show(ids[20]!)).status === 'active', 10_000)).toBe(true)
      const text = await (await fetch(metrics)).text()
      expect(text).toMatch(/outpost_agent_contracts_total\{result="provisioned"\} 50\b/)
      expect(text).toMatch(/outpost_agent_contracts_total\{result="terminated"\} 10\b/)
      expect(text).toMatch(/outpost_agent_reaction_latency_seconds_count 50\b/)
      expect((await fetch(metrics.replace('/metrics', '/readyz'))).status).toBe(200)
      // Usage reports come every 2 s; between them the outbox empties.
      expect(await waitFor(async () => /^outpost_agent_outbox_depth 0$/m.test(await (await fetch(metrics)).text()), 10_000, 50)).toBe(true)
    } finally {
      agent.kill('SIGTERM')
    }
    const exit = await agent.exited
    expect(exit.code).toBe(0)
    const lines = agent.logLines()
    expect(lines.some((line) => line.msg === 'stopped')).toBe(true)
    expect(readFileSync(agent.logFile, 'utf8')).not.toMatch(/"level":50/)
  })

  it('shares the work between two agents of one provider: each contract provisioned exactly once', {timeout: 90_000}, async () => {
    // The second agent's key is encrypted: its passphrase must never show up in a log either.
    const second = await addAgent(devnet.endpoint, provider, {passphrase: PASSPHRASE, label: 'agent-b'})
    configDirs.push(second.configDir)
    secrets.push(PASSPHRASE, toHex(second.agentKey.seed))
    const limits = {OUTPOST_AGENT_MAX_CONCURRENT_PROVISIONS: '2'}
    const agents = [
      startAgent(fastAgentEnv(provider.configDir, limits), join(logDir, 'agent-a.log')),
      startAgent({...fastAgentEnv(second.configDir, limits), OUTPOST_KEY_PASSPHRASE: PASSPHRASE}, join(logDir, 'agent-b.log')),
    ]
    const buyer = renter(devnet.endpoint)
    const ids: string[] = []
    try {
      await Promise.all(agents.map((agent) => metricsUrl(agent)))
      for (let index = 0; index < 30; index++) ids.push((await buyer.create(provider.offeringId)).contract_id)
      contractIds.push(...ids)
      const shown = new Map<string, Contract>()
      const done = await waitFor(async () => {
        for (const id of ids) if (!['provisioned', 'active'].includes(shown.get(id)?.status ?? '')) shown.set(id, await buyer.show(id))
        return ids.every((id) => ['provisioned', 'active'].includes(shown.get(id)!.status))
      }, 60_000, 250)
      expect(done).toBe(true)
      for (const contract of shown.values()) secrets.push(contract.instance!.sealed_credentials!, (openSealedCredentials(contract.instance!.sealed_credentials!, buyer.key.seed) as {password: string}).password)

      const processes = instanceProcesses(ids)
      expect(ids.map((id) => processes.get(id)?.length ?? 0)).toEqual(ids.map(() => 1))
      // Each contract was made by exactly one of the two agents, and both took part.
      const madeBy = [provider.configDir, second.configDir].map((dir) =>
        readJournal(join(dir, 'state', 'journal.jsonl')).entries.filter((entry) => entry.event === 'instance_ready' && ids.includes(entry.contract_id)).map((entry) => 'contract_id' in entry ? entry.contract_id : ''),
      )
      expect([...madeBy[0]!, ...madeBy[1]!].sort()).toEqual([...ids].sort())
      expect(madeBy[0]!.length).toBeGreaterThan(0)
      expect(madeBy[1]!.length).toBeGreaterThan(0)

      // Cancelled contracts are terminated by the agent that runs them, not by the other.
      for (const id of ids.slice(0, 6)) await buyer.cancel(id)
      expect(await waitFor(async () => (await Promise.all(ids.slice(0, 6).map((id) => buyer.show(id)))).every((contract) => contract.status === 'terminated'), 30_000)).toBe(true)
      const left = instanceProcesses(ids)
      for (const id of ids.slice(0, 6)) expect(left.get(id)).toBeUndefined()
    } finally {
      for (const agent of agents) agent.kill('SIGTERM')
    }
    for (const agent of agents) expect((await agent.exited).code).toBe(0)
  })

  it('never logs a secret key, a passphrase, a password or sealed credentials', () => {
    secrets.push(toHex(provider.agentKey.seed), toHex(provider.mainKey.seed))
    expect(secrets.length).toBeGreaterThan(100)
    for (const file of readdirSync(logDir)) {
      const log = readFileSync(join(logDir, file), 'utf8')
      expect(log.length).toBeGreaterThan(0)
      for (const secret of secrets) expect(log.includes(secret), `${file} contains a secret`).toBe(false)
    }
  })
})
