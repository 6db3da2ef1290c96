import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import Database from 'better-sqlite3'

import {metricValue} from '../../test/support/agent-run.js'
import {REPO_ROOT} from '../../test/support/cli.js'
import {fastAgentEnv, initProvider, killInstances, metricsUrl, renter, startAgent, startAgentProcess, waitFor, type AgentProcess} from '../../test/support/marketplace.js'
import {DATABASE_FILE_NAME} from '../../src/marketplace/database.js'
import {AGENT_NODE_FLAGS} from '../../src/setup/service.js'
import {PERL_LISTENER, sleep} from './processes.js'
import type {BenchRow, BenchSection} from './types.js'
import {startDevnet} from '../../test/support/devnet.js'

/**
 * Where the time of a whole contract goes: the agent's and the devnet's own CPU per contract over a full lifecycle
 * (lock, provisioning reports, health checks, usage records, cancel, terminate, terminated report), read from
 * /proc/<pid>/stat of each process. Twice: with a backend that costs nothing (the agent service with a provisioner
 * that keeps instances in a map, scripts/bench/recording-agent.ts), which is the agent's own cost, and with the real
 * local backend running a tiny perl listener per contract, whose difference is what starting a process per contract
 * costs the agent (fork and exec). The devnet runs as its own process so its CPU is not mixed with the renter's
 * requests made by this script.
 */

const CONTRACTS = Number(process.env.OUTPOST_BENCH_LIFECYCLE_CONTRACTS ?? 200)
const RECORDING_AGENT = join(REPO_ROOT, 'scripts', 'bench', 'recording-agent.ts')
const CPU_GOAL_MS = 5
const THROUGHPUT_GOAL = 100
const CLOCK_TICKS_PER_SECOND = 100
const ROUND_SECONDS = 5
const STEADY_SECONDS = 10

/** User plus system CPU of one process (not its children), in milliseconds. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name may hold spaces: fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND
}

/** A count from the devnet's database, read by this process: waiting on it costs the agent and the devnet nothing. */
function count(dataDir: string, query: string): number {
  const database = new Database(join(dataDir, DATABASE_FILE_NAME), {readonly: true, fileMustExist: true})
  try {
    return (database.prepare(query).get() as {n: number}).n
  } finally {
    database.close()
  }
}

const countRows = (dataDir: string, table: 'health_checks' | 'usage_records') => count(dataDir, `SELECT count(*) AS n FROM ${table}`)
const countContracts = (dataDir: string, statuses: string[]) => count(dataDir, `SELECT count(*) AS n FROM contracts WHERE status IN (${statuses.map((status) => `'${status}'`).join(', ')})`)

interface Cpu {
  agent: number
  devnet: number
}

type Backend = 'recording' | 'local'

/**
 * Three phases with one agent: every contract created and provisioned; all of them held active for a window in which
 * health checks and usage records run every ROUND_SECONDS (counted in the devnet's database, so a loaded machine that
 * stretches the window does not inflate the figure); all cancelled and terminated. A lifecycle is the first phase,
 * one health check, one usage record and the last phase.
 */
async function measureLifecycle(backend: Backend): Promise<BenchRow[]> {
  const group = 'lifecycle'
  const dataDir = mkdtempSync(join(tmpdir(), 'outpost-bench-lifecycle-'))
  const devnet = await startDevnet({dataDir, process: {args: ['--rate-limit', '1000000', '--address-rate-limit', '1000000']}})
  const ids: string[] = []
  let agent: AgentProcess | undefined
  let configDir: string | undefined
  try {
    const devnetPid = devnet.child.pid!
    const provider = await initProvider(devnet.endpoint)
    configDir = provider.configDir
    const env = fastAgentEnv(provider.configDir, {
      OUTPOST_AGENT_MAX_CONCURRENT_PROVISIONS: '32',
      OUTPOST_AGENT_LONG_POLL_WAIT_SECONDS: '25',
      OUTPOST_AGENT_HEALTH_CHECK_INTERVAL_SECONDS: String(ROUND_SECONDS),
      OUTPOST_AGENT_USAGE_INTERVAL_SECONDS: String(ROUND_SECONDS),
      OUTPOST_PROVISIONER_LOCAL_COMMAND: JSON.stringify(PERL_LISTENER),
    })
    const logFile = join(dataDir, 'agent.log')
    agent = backend === 'recording' ? startAgentProcess([...AGENT_NODE_FLAGS, '--import', 'tsx', RECORDING_AGENT], env, logFile) : startAgent(env, logFile)
    const agentPid = agent.pid
    const metrics = await metricsUrl(agent)
    await sleep(1000)
    const buyer = renter(devnet.endpoint)
    const cpu = (): Cpu => ({agent: cpuMs(agentPid), devnet: cpuMs(devnetPid)})
    const perContract = (from: Cpu, to: Cpu, count: number): Cpu => ({agent: (to.agent - from.agent) / count, devnet: (to.devnet - from.devnet) / count})

    const beforeCreate = cpu()
    const started = Date.now()
    for (let start = 0; start < CONTRACTS; start += 50) {
      const batch = await Promise.all(Array.from({length: Math.min(50, CONTRACTS - start)}, () => buyer.create(provider.offeringId)))
      ids.push(...batch.map((contract) => contract.contract_id))
    }
    // Provisioned as the marketplace records it, read from its database: scraping the agent's /metrics 20 times a
    // second would add the scrapes to the agent's CPU.
    if (!(await waitFor(() => countContracts(dataDir, ['provisioned', 'active']) >= CONTRACTS, 300_000, 50))) throw new Error('the contracts were not all provisioned within 5 minutes')
    const provisionedSeconds = (Date.now() - started) / 1000
    const provisioned = cpu()

    const healthBefore = countRows(dataDir, 'health_checks')
    const usageBefore = countRows(dataDir, 'usage_records')
    await sleep(STEADY_SECONDS * 1000)
    const steady = cpu()
    const rounds = (countRows(dataDir, 'health_checks') - healthBefore + countRows(dataDir, 'usage_records') - usageBefore) / 2

    for (let start = 0; start < ids.length; start += 50) await Promise.all(ids.slice(start, start + 50).map((id) => buyer.cancel(id)))
    const ended =
      (await waitFor(() => countContracts(dataDir, ['terminated']) === CONTRACTS, 300_000, 50)) &&
      (await waitFor(async () => (await metricValue(metrics, 'outpost_agent_active_contracts')) === 0 && (await metricValue(metrics, 'outpost_agent_outbox_depth')) === 0, 60_000, 250))
    if (!ended) throw new Error('the contracts did not all end within 5 minutes')
    const terminated = cpu()

    const start = perContract(beforeCreate, provisioned, CONTRACTS)
    const round = perContract(provisioned, steady, Math.max(1, rounds))
    const end = perContract(steady, terminated, CONTRACTS)
    const lifecycle = {agent: start.agent + round.agent + end.agent, devnet: start.devnet + round.devnet + end.devnet}
    const throughput = CONTRACTS / provisionedSeconds
    if (backend === 'local') {
      return [
        {group, name: 'agent CPU per contract, local backend (a process each)', value: lifecycle.agent, unit: 'ms', note: `${CONTRACTS} contracts, a perl listener each`},
        {group, name: '  of which lock and provisioning', value: start.agent, unit: 'ms'},
        {group, name: 'contracts per second, local backend', value: throughput, unit: '/s', note: 'created → provisioned, 32 at once'},
      ]
    }
    const note = `${CONTRACTS} contracts, a backend that costs nothing`
    return [
      {group, name: 'agent CPU per contract, whole lifecycle', value: lifecycle.agent, unit: 'ms', ratio: lifecycle.agent / CPU_GOAL_MS, note: `goal ≤ ${CPU_GOAL_MS} ms; ${note}`},
      {group, name: '  of which lock and provisioning', value: start.agent, unit: 'ms'},
      {group, name: '  of which one health check and one usage record', value: round.agent, unit: 'ms', note: `${rounds} of each counted in ${STEADY_SECONDS} s`},
      {group, name: '  of which cancel, terminate and final usage', value: end.agent, unit: 'ms'},
      {group, name: 'devnet CPU per contract, whole lifecycle', value: lifecycle.devnet, unit: 'ms', ratio: lifecycle.devnet / CPU_GOAL_MS, note: `goal ≤ ${CPU_GOAL_MS} ms`},
      {group, name: '  of which lock and provisioning', value: start.devnet, unit: 'ms'},
      {group, name: '  of which one health check and one usage record', value: round.devnet, unit: 'ms'},
      {group, name: '  of which cancel, terminate and final usage', value: end.devnet, unit: 'ms'},
      {group, name: 'contracts per second, backend that costs nothing', value: throughput, unit: '/s', ratio: throughput / THROUGHPUT_GOAL, note: `goal ≥ ${THROUGHPUT_GOAL}/s; created → provisioned, 32 at once`},
    ] satisfies BenchRow[]
  } finally {
    if (agent) {
      agent.kill('SIGTERM')
      await agent.exited
    }
    killInstances(ids)
    devnet.child.kill('SIGTERM')
    await devnet.exited
    if (configDir) rmSync(configDir, {recursive: true, force: true})
    rmSync(dataDir, {recursive: true, force: true})
  }
}

export const lifecycleBench: BenchSection = async () => [...(await measureLifecycle('recording')), ...(await measureLifecycle('local'))]
