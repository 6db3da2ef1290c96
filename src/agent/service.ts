import {mkdirSync} from 'node:fs'

import {configuredClient} from '../core/api/factory.js'
import {JobsApi} from '../core/api/jobs.js'
import {ProviderApi} from '../core/api/provider.js'
import {mainKeySession} from '../core/api/session.js'
import type {LoadedConfig} from '../core/config/load.js'
import {ExitCode, UserError} from '../core/errors.js'
import {parseDuration} from '../core/duration.js'
import {toHex} from '../core/hex.js'
import {readKeyFile} from '../core/keys.js'
import {resolveFrom} from '../core/config/paths.js'
import {type StopSignal, waitForStopSignal} from '../core/signals.js'
import type {KeyPair} from '../core/signing.js'
import type {Provisioner} from '../provisioners/provisioner.js'
import {Agent, DRAIN_HEARTBEAT_MS, type AgentSettings} from './agent.js'
import {auctionPricingScript} from './bidding/auction-script.js'
import {Chores, type ChoreSettings} from './chores.js'
import type {UnsignedResult} from './result-envelope.js'
import {pricingScript} from './bidding/script-pricing.js'
import {watchGpuMetrics} from './gpus.js'
import {createLogger, type AgentLog} from './logger.js'
import {createMetrics, startProbeServer, type AgentMetrics, type ContractResult, type ProbeServer} from './metrics.js'
import {recordProbeUrl} from './probe-url.js'
import {claimStateDir, removeTempFiles} from './state-dir.js'

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
  /** Opens an encrypted `[agent] main_key_file` (auto_claim). */
  passphrase?: () => Promise<string>
  /**
   * SIGTERM or SIGINT, listened for by the caller as early as it could (a stop during start-up is then a clean stop);
   * where absent, listened for from the service's start. A second signal means "now": the journal and the outbox are
   * consistent at every step.
   */
  stopRequested?: Promise<StopSignal>
}

export interface AgentRunSummary {
  mode: 'once' | 'daemon'
  stopped_by?: string
  contracts: Record<ContractResult, number>
  interrupted: number
  outbox_left: number
}

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
    siblingDeadAfterSeconds: agent.sibling_dead_after_seconds,
  }
}

/** `off` or a duration, as the schema let it through; a schedule below one second is refused. */
function scheduleMs(loaded: LoadedConfig, key: 'auto_claim' | 'benchmark_every'): number | undefined {
  const text = loaded.config.agent[key]
  if (text === 'off') return undefined
  const ms = parseDuration(text, `[agent] ${key}`)
  if (ms < 1000) {
    throw new UserError(`${loaded.path}: [agent] ${key} = "${text}" is shorter than a second`, {code: 'config_invalid', exit: ExitCode.config, suggestion: `write "off" or a duration like 24h`})
  }
  return ms
}

/** The daemon's chores from `[agent]`; the main key for auto_claim is opened here, so a wrong one stops the start. */
export async function choreSettings(loaded: LoadedConfig, passphrase: (() => Promise<string>) | undefined): Promise<ChoreSettings> {
  const {agent, gpu} = loaded.config
  const claimEvery = scheduleMs(loaded, 'auto_claim')
  const benchmarkEvery = scheduleMs(loaded, 'benchmark_every')
  let autoClaim: ChoreSettings['autoClaim']
  if (claimEvery !== undefined) {
    if (!agent.main_key_file) {
      throw new UserError(`${loaded.path}: [agent] auto_claim needs [agent] main_key_file`, {
        code: 'config_invalid',
        exit: ExitCode.config,
        suggestion: 'claiming rewards is signed with the provider main key (PROTOCOL §8): set main_key_file, or auto_claim = "off" and run `outpost stake claim` yourself',
      })
    }
    const mainKey = await readKeyFile(resolveFrom(loaded.path, agent.main_key_file), {mainKey: true, passphrase})
    autoClaim = {everyMs: claimEvery, session: mainKeySession(loaded, mainKey)}
  }
  // The benchmark, the TPM and the job executors are loaded only when configured: an idle agent's memory is what it loads.
  const benchmark: ChoreSettings['benchmark'] =
    benchmarkEvery === undefined
      ? undefined
      : {
          everyMs: benchmarkEvery,
          settings: {types: (await import('../bench/run.js')).BENCHMARK_TYPES, durationMs: 3000, quick: false, storageDir: loaded.paths.stateDir, submit: true, nvidiaSmi: gpu.nvidia_smi},
        }
  return {archiveDays: agent.archive_days, ...(autoClaim ? {autoClaim} : {}), ...(benchmark ? {benchmark} : {})}
}

/** The probes on `[metrics] listen`; an address another process holds is a configuration error that says what to set. */
async function startProbes(listen: string, metrics: AgentMetrics, readiness: () => {ready: boolean}): Promise<ProbeServer> {
  try {
    return await startProbeServer(listen, metrics, readiness)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      const why = code === 'EADDRINUSE' ? 'is in use by another process (another agent on this host?)' : code === 'EACCES' ? 'may not be used by this user' : 'is not an address of this host'
      throw new UserError(`the metrics address ${listen} ${why}`, {
        code: 'metrics_listen',
        exit: ExitCode.config,
        suggestion: 'give each agent its own [metrics] listen (OUTPOST_METRICS_LISTEN), e.g. 127.0.0.1:9465, or turn metrics off with [metrics] enabled = false',
        cause: error,
      })
    }
    throw error
  }
}

/** `outpost run`: the agent with its logger, metrics and probes, until a signal (or one round with `once`). */
export async function runAgentService(options: AgentServiceOptions): Promise<AgentRunSummary> {
  const {loaded, key} = options
  const {config} = loaded
  // At once: a stop asked for while the agent starts is a clean stop, not the default action of the signal.
  const stopSignal = options.once ? undefined : (options.stopRequested ?? waitForStopSignal({secondSignalExits: true}))
  const providerPubkey = config.marketplace.provider_pubkey
  if (!providerPubkey) {
    throw new UserError(`${loaded.path}: [marketplace] provider_pubkey is not set`, {
      code: 'not_registered',
      exit: ExitCode.config,
      suggestion: 'run `outpost register` first',
    })
  }
  // Before anything is claimed or started: a main key that does not open stops the start here.
  const chores = options.once ? undefined : await choreSettings(loaded, options.passphrase)
  // Before anything starts: with [attestation] on, a TPM that can't quote with the enrolled AK is said now, not per job.
  const attester = config.jobs.enabled && config.attestation.enabled ? await (await import('../attest/attest.js')).TpmResultAttester.ready(loaded) : undefined
  const executors = config.jobs.enabled ? (await import('../executors/index.js')).createExecutors(config.jobs, {configPath: loaded.path, stateDir: loaded.paths.stateDir}) : undefined
  const log = createLogger({level: config.logging.level, format: config.logging.format, stream: options.logStream})
  void stopSignal?.then((signal) => log.info({signal}, 'stopping: no new work; finishing or checkpointing what is in progress'))
  mkdirSync(loaded.paths.stateDir, {recursive: true, mode: 0o700})
  const claim = claimStateDir(loaded.paths.stateDir)
  for (const path of removeTempFiles(loaded.paths.stateDir, Date.now())) log.info({path}, 'removed a temporary file left by a write that was cut short')
  const metrics = createMetrics({bidding: config.bidding.enabled, jobs: config.jobs.enabled, stateDir: loaded.paths.stateDir})
  const provisioner = options.createProvisioner(log)
  const client = configuredClient(loaded, 'daemon', {key, userAgent: `outpost-agent/${options.version}`})
  let probes: ProbeServer | undefined
  let forgetProbeUrl: () => void = () => undefined
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
      offerings: config.offerings,
      ...(config.bidding.enabled ? {bidding: {config: config.bidding, script: pricingScript(loaded)}} : {}),
      ...(executors
        ? {
            jobs: {
              api: new JobsApi(client, providerPubkey),
              executors,
              settings: {kinds: config.jobs.kinds, maxConcurrent: config.jobs.max_concurrent, minReward: config.jobs.min_reward},
              ...(attester ? {attest: (fields: UnsignedResult & {signer: string}) => attester.attest(fields)} : {}),
              ...(config.jobs.bidding ? {auctions: {config: config.jobs.bidding, script: auctionPricingScript(loaded.path, config.jobs.bidding)}} : {}),
            },
          }
        : {}),
    })
    if (claim.unwritten) {
      agent.disk.noteFailure(claim.unwritten.path, claim.unwritten.error)
      agent.disk.onRecovery('pid file', claim.unwritten.write)
    }
    if (config.metrics.enabled && !options.once) {
      await watchGpuMetrics(metrics.registry, config.gpu, () => agent.gpuHolders())
      probes = await startProbes(config.metrics.listen, metrics, () => agent.readiness())
      forgetProbeUrl = recordProbeUrl(loaded.paths.stateDir, probes.url)
    }
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
        jobs: config.jobs.enabled ? config.jobs.kinds : 'off',
        attestation: attester ? config.attestation.pcrs : 'off',
      },
      'agent starting',
    )
    if (config.offerings.length === 0) {
      log.warn({config: loaded.path}, 'no [[offerings]] in the config: every contract for an offering is refused, since none can be bounded (add the offerings `outpost register` published)')
    }

    // No signal handlers with --once (stopSignal is undefined): a signal ends the round the usual way.
    if (stopSignal === undefined) {
      try {
        const result = await agent.runOnce()
        const {outboxLeft, ...contracts} = result
        return {mode: 'once', contracts, interrupted: 0, outbox_left: outboxLeft}
      } finally {
        await agent.stop(options.shutdownTimeoutMs)
      }
    }

    await agent.start()
    const chored = chores && new Chores({session: {client, providerPubkey}, agentPubkey: toHex(key.publicKey), stateDir: loaded.paths.stateDir, log, metrics, settings: chores})
    chored?.start()
    const stoppedBy = await stopSignal
    // A stop is a drain (§5): the marketplace hears `draining`, no new work is taken, what runs is finished. The
    // draining heartbeat is part of the shutdown budget, so a stop still ends within --shutdown-timeout (or 1 s).
    const drainStarted = Date.now()
    await chored?.stop()
    await agent.drain(Math.min(DRAIN_HEARTBEAT_MS, Math.max(1000, options.shutdownTimeoutMs)))
    const {interrupted, outboxLeft} = await agent.stop(Math.max(0, options.shutdownTimeoutMs - (Date.now() - drainStarted)))
    return {mode: 'daemon', stopped_by: stoppedBy, contracts: {...agent.outcomes}, interrupted, outbox_left: outboxLeft}
  } finally {
    await probes?.close()
    forgetProbeUrl()
    claim.release()
  }
}
