import {mkdirSync, readFileSync, rmSync} from 'node:fs'
import {join} from 'node:path'

import {ApiClient, marketplaceClientOptions} from '../core/api/client.js'
import {ProviderApi} from '../core/api/provider.js'
import type {LoadedConfig} from '../core/config/load.js'
import {ExitCode, UserError} from '../core/errors.js'
import {writeFileAtomic} from '../core/files.js'
import {toHex} from '../core/hex.js'
import type {KeyPair} from '../core/signing.js'
import type {Provisioner} from '../provisioners/provisioner.js'
import {Agent, type AgentSettings} from './agent.js'
import {pricingScript} from './bidding/script-pricing.js'
import {createLogger, type AgentLog} from './logger.js'
import {createMetrics, startProbeServer, type ContractResult, type ProbeServer} from './metrics.js'

export interface AgentServiceOptions {
  loaded: LoadedConfig
  key: KeyPair
  /** Builds the backend with the agent's logger, so a backend's notices (the manual one's requests) reach the log. */
  createProvisioner: (log: AgentLog) => Provisioner
  version: string
  once: boolean
  pruneOrphans: boolean
  shutdownTimeoutMs: number
  /** Where log lines go (standard output unless --json needs it). */
  logStream?: NodeJS.WritableStream & {isTTY?: boolean}
}

export interface AgentRunSummary {
  mode: 'once' | 'daemon'
  stopped_by?: string
  contracts: Record<ContractResult, number>
  interrupted: number
  outbox_left: number
}

/** Per request: few retries, because the daemon's loops back off and try again on their own. */
const DAEMON_RETRY = {retries: 2, baseDelayMs: 250, maxDelayMs: 2000}

export function agentSettings(loaded: LoadedConfig): AgentSettings {
  const agent = loaded.config.agent
  return {
    heartbeatSeconds: agent.heartbeat_seconds,
    longPollWaitSeconds: agent.long_poll_wait_seconds,
    pollIntervalSeconds: agent.poll_interval_seconds,
    healthCheckIntervalSeconds: agent.health_check_interval_seconds,
    usageIntervalSeconds: agent.usage_interval_seconds,
    reconcileIntervalSeconds: agent.reconcile_interval_seconds,
    activeSyncSeconds: agent.active_sync_seconds,
    maxConcurrentProvisions: agent.max_concurrent_provisions,
    lockTtlSeconds: agent.lock_ttl_seconds,
  }
}

/** One agent per state dir: two would each think the other's work was left unfinished by a crash. */
function claimStateDir(stateDir: string): () => void {
  const path = join(stateDir, 'agent.pid')
  let holder: number | undefined
  try {
    holder = Number(readFileSync(path, 'utf8').trim())
  } catch {
    holder = undefined
  }
  if (holder && holder !== process.pid && processAlive(holder)) {
    throw new UserError(`another agent (pid ${holder}) runs with the state dir ${stateDir}`, {
      code: 'agent_running',
      exit: ExitCode.refused,
      suggestion: 'stop it first, or give this agent its own [agent] state_dir',
    })
  }
  writeFileAtomic(path, `${process.pid}\n`, 0o600)
  return () => rmSync(path, {force: true})
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function waitForSignal(log: AgentLog): Promise<string> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      log.info({signal}, 'stopping: no new work; finishing or checkpointing what is in progress')
      // A second signal means "now": the journal and the outbox are consistent at every step, so that is safe.
      process.once('SIGINT', () => process.exit(130))
      process.once('SIGTERM', () => process.exit(143))
      resolve(signal)
    }
    process.once('SIGTERM', onSignal)
    process.once('SIGINT', onSignal)
  })
}

/** `outpost run`: the agent with its logger, metrics and probes, until a signal (or one round with `once`). */
export async function runAgentService(options: AgentServiceOptions): Promise<AgentRunSummary> {
  const {loaded, key} = options
  const {config} = loaded
  const providerPubkey = config.marketplace.provider_pubkey
  if (!providerPubkey) {
    throw new UserError(`${loaded.path}: [marketplace] provider_pubkey is not set`, {
      code: 'not_registered',
      exit: ExitCode.config,
      suggestion: 'run `outpost register` first',
    })
  }
  const log = createLogger({level: config.logging.level, format: config.logging.format, stream: options.logStream})
  mkdirSync(loaded.paths.stateDir, {recursive: true, mode: 0o700})
  const releaseStateDir = claimStateDir(loaded.paths.stateDir)
  const metrics = createMetrics()
  const provisioner = options.createProvisioner(log)
  const client = new ApiClient({
    ...marketplaceClientOptions(config.marketplace),
    key,
    retry: DAEMON_RETRY,
    userAgent: `outpost-agent/${options.version}`,
  })
  let probes: ProbeServer | undefined
  try {
    const agent = new Agent({
      api: new ProviderApi(client, providerPubkey),
      key,
      provisioner,
      stateDir: loaded.paths.stateDir,
      log,
      metrics,
      settings: agentSettings(loaded),
      version: options.version,
      pruneOrphans: options.pruneOrphans,
      ...(config.bidding.enabled ? {bidding: {config: config.bidding, script: pricingScript(loaded)}} : {}),
    })
    if (config.metrics.enabled && !options.once) probes = await startProbeServer(config.metrics.listen, metrics, () => agent.ready)
    log.info(
      {
        version: options.version,
        provider: providerPubkey,
        agent_key: toHex(key.publicKey),
        agent_id: agent.agentId,
        endpoint: config.marketplace.endpoint,
        provisioner: provisioner.type,
        state_dir: loaded.paths.stateDir,
        metrics: probes ? `${probes.url}/metrics` : null,
        mode: options.once ? 'once' : 'daemon',
        bidding: config.bidding.enabled ? config.bidding.strategy : 'off',
      },
      'agent starting',
    )

    if (options.once) {
      try {
        const result = await agent.runOnce()
        const {outboxLeft, ...contracts} = result
        return {mode: 'once', contracts, interrupted: 0, outbox_left: outboxLeft}
      } finally {
        await agent.stop(options.shutdownTimeoutMs)
      }
    }

    const stopSignal = waitForSignal(log)
    await agent.start()
    const stoppedBy = await stopSignal
    const {interrupted, outboxLeft} = await agent.stop(options.shutdownTimeoutMs)
    return {mode: 'daemon', stopped_by: stoppedBy, contracts: {...agent.outcomes}, interrupted, outbox_left: outboxLeft}
  } finally {
    await probes?.close()
    releaseStateDir()
  }
}
