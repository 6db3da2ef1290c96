import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  addAgent,
  fastAgentEnv,
  initProvider,
  killInstances,
  renter,
  startAgent,
  startDevnet,
  waitFor,
  type AgentProcess,
  type Devnet,
  type ProviderSetup,
} from '../support/marketplace.js'
import {billing, outboxEntries, settleRunning} from '../support/agent-run.js'

/**
 * Two agents of one provider on one host, sharing the local backend's instance records ([provisioner.local]
 * instances_dir). One is SIGKILLed for good while it runs contracts and has others half made: the survivor takes over
 * its running contracts once its heartbeat is older than the bound (health, usage, termination), and finishes the
 * half-made ones with the instances the dead agent started, never a second one.
 */

/** The devnet asks for a heartbeat every 10 s (the least PROTOCOL §5 allows); a sibling is dead after 20 s without one. */
const HEARTBEAT_SECONDS = 10
const DEAD_AFTER_SECONDS = 20
/** The workload listens only after this long, so a kill lands while instances are half made. */
const WORKLOAD_START_MS = 8000

let devnet: Devnet
let provider: ProviderSetup
let second: {configDir: string}
const ids: string[] = []
const dirs: string[] = []
const agents: AgentProcess[] = []

beforeAll(async () => {
  devnet = await startDevnet({heartbeatSeconds: HEARTBEAT_SECONDS})
  provider = await initProvider(devnet.endpoint)
  second = await addAgent(devnet.endpoint, provider, {label: 'survivor'})
  dirs.push(provider.configDir, second.configDir)
})

afterAll(async () => {
  for (const agent of agents) agent.kill('SIGKILL')
  await Promise.all(agents.map((agent) => agent.exited))
  killInstances(ids)
  await devnet?.stop()
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

function started(agent: AgentProcess, message: string, count = 1): Promise<boolean> {
  return waitFor(() => agent.logLines().filter((line) => line.msg === message).length >= count, 60_000, 100)
}

describe('outpost run: a dead sibling agent', () => {
  it('has its contracts taken over by the survivor, and nothing provisioned twice', {timeout: 240_000}, async () => {
    const shared = mkdtempSync(join(tmpdir(), 'outpost-shared-instances-'))
    const logs = mkdtempSync(join(tmpdir(), 'outpost-takeover-logs-'))
    dirs.push(shared, logs)
    const slowWorkload = `setTimeout(() => require('node:net').createServer((socket) => socket.end('ready\\n')).listen(Number(process.env.PORT), '127.0.0.1'), ${WORKLOAD_START_MS})`
    const common = {
      OUTPOST_PROVISIONER_LOCAL_INSTANCES_DIR: shared,
      OUTPOST_PROVISIONER_LOCAL_COMMAND: JSON.stringify([process.execPath, '-e', slowWorkload]),
      OUTPOST_PROVISIONER_LOCAL_STARTUP_TIMEOUT_SECONDS: '60',
      OUTPOST_AGENT_SIBLING_DEAD_AFTER_SECONDS: String(DEAD_AFTER_SECONDS),
    }
    const buyer = renter(devnet.endpoint)
    const create = async (count: number) => {
      const made: string[] = []
      for (let index = 0; index < count; index++) made.push((await buyer.create(provider.offeringId)).contract_id)
      ids.push(...made)
      return made
    }

    // The first agent alone: 4 contracts running, then 3 half made (their workloads not listening yet).
    const doomed = startAgent(fastAgentEnv(provider.configDir, common), join(logs, 'doomed.log'))
    agents.push(doomed)
    const running = await create(4)
    expect(await settleRunning(devnet.dataDir, running, new Set(), 90_000)).toEqual([])
    const halfMade = await create(3)
    expect(await started(doomed, 'provisioning', running.length + halfMade.length), readFileSync(doomed.logFile, 'utf8')).toBe(true)

    // The survivor joins, and the first agent dies for good while its 3 instances are still starting.
    const survivor = startAgent(fastAgentEnv(second.configDir, common), join(logs, 'survivor.log'))
    agents.push(survivor)
    expect(await started(survivor, 'the marketplace acknowledged the heartbeat')).toBe(true)
    doomed.kill('SIGKILL')
    await doomed.exited
    const killedAt = Date.now()

    const cancelled = new Set(running.slice(0, 2))
    for (const id of cancelled) await buyer.cancel(id)
    const later = await create(2)
    const all = [...running, ...halfMade, ...later]
    const tail = () => readFileSync(survivor.logFile, 'utf8').split('\n').slice(-40).join('\n')
    expect(await settleRunning(devnet.dataDir, all, cancelled, 120_000), tail()).toEqual([])
    const tookMs = Date.now() - killedAt

    const lines = survivor.logLines()
    const takenOver = new Set(lines.filter((line) => String(line.msg).startsWith('taking over a contract of a dead sibling')).map((line) => line.contract_id))
    for (const id of running) expect(takenOver.has(id), id).toBe(true)
    const found = new Set(lines.filter((line) => String(line.msg).startsWith("found the contract's instance")).map((line) => line.contract_id))
    for (const id of halfMade) expect(found.has(id), `${id} was made again instead of found`).toBe(true)

    // The rest end too; the survivor bills what the dead agent could not.
    for (const id of all) if (!cancelled.has(id)) await buyer.cancel(id)
    expect(await settleRunning(devnet.dataDir, all, new Set(all), 60_000), tail()).toEqual([])
    const survivorState = join(second.configDir, 'state')
    expect(await waitFor(() => outboxEntries(survivorState).length === 0, 30_000)).toBe(true)
    const billed = billing(devnet.dataDir, all)
    expect(billed.gaps, tail()).toEqual([])
    survivor.kill('SIGTERM')
    expect((await survivor.exited).code).toBe(0)
    const leftByTheDead = outboxEntries(join(provider.configDir, 'state')).length
    console.log(
      `takeover run: ${JSON.stringify({contracts: all.length, running_at_kill: running.length, half_made_at_kill: halfMade.length, taken_over: takenOver.size, settled_after_kill_seconds: Math.round(tookMs / 1000), left_in_dead_outbox: leftByTheDead, ...billed})}`,
    )
  })
})
