import {spawn, type ChildProcess} from 'node:child_process'
import {appendFileSync, closeSync, copyFileSync, mkdtempSync, openSync, readdirSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {z} from 'zod'

import {ApiClient} from '../../src/core/api/client.js'
import {Contract} from '../../src/core/api/schemas.js'
import {createDelegation} from '../../src/core/api/main-key.js'
import {AGENT_PERMISSIONS, signDelegation, type DelegationTerms} from '../../src/core/delegation.js'
import {toHex} from '../../src/core/hex.js'
import {createKeyFile, readKeyFile} from '../../src/core/keys.js'
import {generateKeyPair, type KeyPair} from '../../src/core/signing.js'
import {AGENT_NODE_FLAGS} from '../../src/setup/service.js'
import {BIN, runCli, TEST_PASSPHRASE} from './cli.js'
import {profileArgs} from './devnet.js'

/**
 * A real devnet marketplace on a free loopback port, and the signed calls a provider and a renter make, for the agent's
 * end-to-end tests. The server can be stopped and started again on the same port and data (an outage, for real).
 */

export {startDevnet, type Devnet} from './devnet.js'

const Anything = z.unknown()
const Offering = z.object({offering_id: z.string()})
const FAST_RETRY = {retries: 3, baseDelayMs: 100, maxDelayMs: 1000}

export function client(endpoint: string, key: KeyPair): ApiClient {
  return new ApiClient({endpoint, key, retry: FAST_RETRY, timeoutMs: 10_000})
}

/** What `outpost register` sends for an agent key: every permission, no expiry, signed by the main key (§3). */
async function delegateEverything(endpoint: string, mainKey: KeyPair, agentKey: KeyPair, label: string): Promise<void> {
  const terms: DelegationTerms = {agentPubkey: toHex(agentKey.publicKey), providerPubkey: toHex(mainKey.publicKey), permissions: AGENT_PERMISSIONS, expiresAt: null, label}
  await createDelegation(client(endpoint, mainKey), terms, signDelegation(mainKey, terms))
}

/** The one offering registerProvider publishes, and initProvider writes into the agent's [[offerings]]. */
export const SMALL_OFFERING = {name: 'small', product_type: 'compute', cpu_cores: 1, memory_mb: 512, storage_gb: 5, price_per_hour: '0.05'} as const

/** SMALL_OFFERING as a config's [[offerings]] entry: the agent provisions only what its config sells (PROTOCOL §6). */
export const SMALL_OFFERING_TOML = `
[[offerings]]
name = "small"
product_type = "compute"
cpu_cores = 1
memory_mb = 512
storage_gb = 5
price_per_hour = "0.05"
`

export interface RegisteredProvider {
  providerPubkey: string
  offeringId: string
}

/** What `outpost register` does (provider, agent delegations with every permission, one offering), plus a stake. */
export async function registerProvider(endpoint: string, mainKey: KeyPair, agentKeys: KeyPair[], options: {stake?: string} = {}): Promise<RegisteredProvider> {
  const main = client(endpoint, mainKey)
  const pk = toHex(mainKey.publicKey)
  await main.post('/providers', {schema: Anything, body: {name: 'E2E Compute', contact_email: 'ops@e2e.example'}})
  for (const [index, agentKey] of agentKeys.entries()) await delegateEverything(endpoint, mainKey, agentKey, `agent-${index}`)
  const offering = await main.post(`/providers/${pk}/offerings`, {schema: Offering, body: SMALL_OFFERING})
  // The frontier tier: no cap on concurrent contracts, so the tests measure the agent and not the tier.
  await main.post(`/providers/${pk}/stake`, {schema: Anything, body: {amount: options.stake ?? '25000'}})
  return {providerPubkey: pk, offeringId: offering.offering_id}
}

export interface Renter {
  key: KeyPair
  create(offeringId: string, durationHours?: number): Promise<Contract>
  show(contractId: string): Promise<Contract>
  cancel(contractId: string): Promise<Contract>
}

export function renter(endpoint: string, key = generateKeyPair()): Renter {
  const api = client(endpoint, key)
  return {
    key,
    create: (offeringId, durationHours = 1) =>
      api.post('/contracts', {schema: Contract, body: {offering_id: offeringId, ssh_pubkey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e renter', duration_hours: durationHours}}),
    show: (contractId) => api.get(`/contracts/${contractId}`, {schema: Contract}),
    cancel: (contractId) => api.post(`/contracts/${contractId}/cancel`, {schema: Contract}),
  }
}

export interface ProviderSetup extends RegisteredProvider {
  configDir: string
  mainKey: KeyPair
  agentKey: KeyPair
}

/** `outpost init --main-key` in a fresh config dir (the built CLI; the main key encrypted with TEST_PASSPHRASE), then the registration calls. */
export async function initProvider(endpoint: string, options: {stake?: string} = {}): Promise<ProviderSetup> {
  const configDir = mkdtempSync(join(tmpdir(), 'outpost-agent-e2e-'))
  const init = await runCli(['init', '--main-key', '--endpoint', endpoint], {env: {OUTPOST_CONFIG_DIR: configDir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}})
  if (init.exitCode !== 0) throw new Error(`outpost init failed:\n${init.stderr}`)
  const mainKey = await readKeyFile(join(configDir, 'provider-main.key'), {passphrase: () => TEST_PASSPHRASE})
  const agentKey = await readKeyFile(join(configDir, 'agent.key'))
  const registered = await registerProvider(endpoint, mainKey, [agentKey], options)
  appendFileSync(join(configDir, 'outpost.toml'), SMALL_OFFERING_TOML)
  return {configDir, mainKey, agentKey, ...registered}
}

/** A second agent of the same provider: its own config dir, state dir and agent key (encrypted when given a passphrase), delegated by the main key. */
export async function addAgent(endpoint: string, provider: ProviderSetup, options: {passphrase?: string; label: string}): Promise<{configDir: string; agentKey: KeyPair}> {
  const configDir = mkdtempSync(join(tmpdir(), 'outpost-agent-e2e-'))
  copyFileSync(join(provider.configDir, 'outpost.toml'), join(configDir, 'outpost.toml'))
  const {key: agentKey} = createKeyFile(join(configDir, 'agent.key'), 'agent', {passphrase: options.passphrase})
  await delegateEverything(endpoint, provider.mainKey, agentKey, options.label)
  return {configDir, agentKey}
}

/** The settings that make the agent quick enough to test (all through OUTPOST_* variables, as an operator would). */
export function fastAgentEnv(configDir: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    OUTPOST_CONFIG_DIR: configDir,
    OUTPOST_AGENT_LOCK_TTL_SECONDS: '30',
    OUTPOST_AGENT_ACTIVE_SYNC_SECONDS: '1',
    OUTPOST_AGENT_HEALTH_CHECK_INTERVAL_SECONDS: '2',
    OUTPOST_AGENT_USAGE_INTERVAL_SECONDS: '2',
    OUTPOST_AGENT_RECONCILE_INTERVAL_SECONDS: '10',
    OUTPOST_AGENT_LONG_POLL_WAIT_SECONDS: '5',
    OUTPOST_AGENT_MAX_CONCURRENT_PROVISIONS: '8',
    OUTPOST_METRICS_LISTEN: '127.0.0.1:0',
    OUTPOST_LOGGING_FORMAT: 'json',
    ...overrides,
  }
}

/** Live processes that carry an instance marker (`OUTPOST_INSTANCE=outpost-<contract>`), by contract id. */
export function instanceProcesses(contractIds: Iterable<string>): Map<string, number[]> {
  const wanted = new Map<string, string>()
  for (const id of contractIds) wanted.set(`OUTPOST_INSTANCE=outpost-${id}\0`, id)
  const found = new Map<string, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let environ: string
    try {
      environ = readFileSync(`/proc/${entry}/environ`, 'latin1')
    } catch {
      continue
    }
    const match = /OUTPOST_INSTANCE=outpost-([0-9a-f]{32})\0/.exec(environ)
    const id = match && wanted.get(`OUTPOST_INSTANCE=outpost-${match[1]}\0`)
    if (id) found.set(id, [...(found.get(id) ?? []), Number(entry)])
  }
  return found
}

/** Kills every instance process of these contracts (test cleanup; the agent's terminate is what is under test). */
export function killInstances(contractIds: Iterable<string>): void {
  for (const pids of instanceProcesses(contractIds).values()) {
    for (const pid of pids) {
      try {
        process.kill(-pid, 'SIGKILL')
      } catch {
        // Already gone, or not a group leader (then the next line gets it).
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
    }
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns whether it became true. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

export interface AgentProcess {
  pid: number
  logFile: string
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
  /** Parsed JSON log lines so far. */
  logLines(): Record<string, unknown>[]
  kill(signal: NodeJS.Signals): void
}

/** Agents still running when the test process ends (a test that failed or timed out left them) end with it. */
const runningAgents = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of runningAgents) child.kill('SIGKILL')
})

/** `outpost run` from the built CLI, with node's flags as the systemd unit gives them, its JSON log appended to `logFile`. */
export function startAgent(env: Record<string, string>, logFile: string, args: string[] = []): AgentProcess {
  return startAgentProcess([...AGENT_NODE_FLAGS, BIN, 'run', ...args], env, logFile)
}

/** An agent started by `node <argv>` (the CLI's `run`, or the bench's agent with a backend that costs nothing). */
export function startAgentProcess(argv: string[], env: Record<string, string>, logFile: string): AgentProcess {
  const log = openSync(logFile, 'a')
  const child = spawn(process.execPath, [...profileArgs(), ...argv], {env: {...process.env, NO_COLOR: '1', CI: 'true', ...env}, stdio: ['ignore', log, log]})
  closeSync(log)
  runningAgents.add(child)
  child.once('exit', () => runningAgents.delete(child))
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) => child.once('exit', (code, signal) => resolve({code, signal})))
  return {
    pid: child.pid ?? 0,
    logFile,
    exited,
    logLines: () => parseLogLines(logFile),
    kill: (signal) => child.kill(signal),
  }
}

export function parseLogLines(logFile: string): Record<string, unknown>[] {
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

/** The URL of the agent's /metrics, from its start-up log line. */
export async function metricsUrl(agent: AgentProcess): Promise<string> {
  let url: string | undefined
  await waitFor(() => {
    url = agent.logLines().find((line) => line.msg === 'agent starting' && typeof line.metrics === 'string')?.metrics as string | undefined
    return url !== undefined
  }, 20_000)
  if (!url) throw new Error(`the agent did not log its metrics address:\n${readFileSync(agent.logFile, 'utf8')}`)
  return url
}
