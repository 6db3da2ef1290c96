import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  addAgent,
  fastAgentEnv,
  initProvider,
  killInstances,
  metricsUrl,
  renter,
  startAgent,
  startDevnet,
  waitFor,
  type AgentProcess,
  type Devnet,
} from '../support/marketplace.js'
import {metricValue, readMarketplace} from '../support/agent-run.js'

/** What an operator runs into at the edges: a second agent on one host, the stake tier's limit, leftovers of killed writes. */

let devnet: Devnet
const dirs: string[] = []
const ids: string[] = []
const agents: AgentProcess[] = []
const logDir = mkdtempSync(join(tmpdir(), 'outpost-agent-limits-'))

beforeAll(async () => {
  devnet = await startDevnet()
})

afterAll(async () => {
  for (const agent of agents) agent.kill('SIGKILL')
  await Promise.all(agents.map((agent) => agent.exited))
  killInstances(ids)
  await devnet?.stop()
  for (const dir of [...dirs, logDir]) rmSync(dir, {recursive: true, force: true})
})

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

function run(env: Record<string, string>, name: string): AgentProcess {
  const agent = startAgent(env, join(logDir, `${name}.log`))
  agents.push(agent)
  return agent
}

describe('outpost run: two agents on one host', () => {
  it('the second, on a metrics port the first holds, exits 3 naming the port and what to set, without a stack trace', async () => {
    const provider = await initProvider(devnet.endpoint)
    const second = await addAgent(devnet.endpoint, provider, {label: 'second'})
    dirs.push(provider.configDir, second.configDir)
    const listen = `127.0.0.1:${await freePort()}`
    const first = run(fastAgentEnv(provider.configDir, {OUTPOST_METRICS_LISTEN: listen}), 'first')
    expect(await metricsUrl(first)).toBe(`http://${listen}/metrics`)

    const late = run(fastAgentEnv(second.configDir, {OUTPOST_METRICS_LISTEN: listen}), 'second')
    expect((await late.exited).code).toBe(3)
    const output = readFileSync(late.logFile, 'utf8')
    expect(output).toContain(`the metrics address ${listen} is in use by another process`)
    expect(output).toContain('[metrics] listen')
    expect(output).toContain('[metrics] enabled = false')
    expect(output).not.toMatch(/^\s+at /m)
    // It released its state dir on the way out: started on a free port, it runs.
    const again = run(fastAgentEnv(second.configDir, {OUTPOST_METRICS_LISTEN: '127.0.0.1:0'}), 'second-again')
    expect(await metricsUrl(again)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
  })
})

describe('outpost run: the stake tier limit', () => {
  it('logs once how many contracts wait on the tier and what more stake lifts it, and exposes the count', {timeout: 120_000}, async () => {
    const provider = await initProvider(devnet.endpoint, {stake: '1000'})
    dirs.push(provider.configDir)
    const agent = run(fastAgentEnv(provider.configDir), 'tier')
    const metrics = await metricsUrl(agent)
    const buyer = renter(devnet.endpoint)
    const mine: string[] = []
    for (let index = 0; index < 5; index++) mine.push((await buyer.create(provider.offeringId)).contract_id)
    ids.push(...mine)
    const provisioned = () => mine.filter((id) => ['provisioned', 'active'].includes(readMarketplace(devnet.dataDir).contracts.get(id)?.status ?? '')).length
    expect(await waitFor(() => provisioned() === 4, 60_000)).toBe(true)
    expect(await waitFor(async () => (await metricValue(metrics, 'outpost_agent_tier_limited_contracts')) === 1, 30_000)).toBe(true)
    const lines = agent.logLines().filter((line) => String(line.msg).includes('on the stake tier limit'))
    expect(lines.map((line) => line.msg)).toEqual(['1 contract waits on the stake tier limit: the tier allows 4 at once; staking 1500 more (tier workstation) allows 8'])
    expect(lines[0]).toMatchObject({waiting: 1, tier: 'consumer', next_tier: 'workstation', stake_needed: '1500'})
  })
})

describe('outpost run: leftovers of killed writes', () => {
  it('removes the temporary files of writes cut short (one may hold an instance password) when it starts', async () => {
    const provider = await initProvider(devnet.endpoint)
    dirs.push(provider.configDir)
    const stateDir = join(provider.configDir, 'state')
    mkdirSync(join(stateDir, 'local'), {recursive: true})
    const leftovers = [join(stateDir, 'local', `.outpost-${'ab'.repeat(16)}.json.0123456789ab.tmp`), join(stateDir, '.agent-id.a1b2c3d4e5f6.tmp')]
    writeFileSync(leftovers[0] ?? '', '{"password":"left-behind-secret"')
    writeFileSync(leftovers[1] ?? '', 'ab')
    const agent = run(fastAgentEnv(provider.configDir), 'leftovers')
    await metricsUrl(agent)
    for (const path of leftovers) expect(existsSync(path), path).toBe(false)
    const removed = agent.logLines().filter((line) => line.msg === 'removed a temporary file left by a write that was cut short')
    expect(removed.map((line) => line.path).sort()).toEqual([...leftovers].sort())
  })
})
