import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {Registry} from 'prom-client'

import {AuctionEngine, type WonJob} from '../../src/agent/bidding/auction-engine.js'
import {AuctionJournal, auctionJournalPath} from '../../src/agent/bidding/auction-journal.js'
import {createAuctionMetrics} from '../../src/agent/bidding/auction-metrics.js'
import {auctionPricingScript} from '../../src/agent/bidding/auction-script.js'
import type {AgentLog} from '../../src/agent/logger.js'
import {ApiClient} from '../../src/core/api/client.js'
import type {JobKind} from '../../src/core/api/job-kinds.js'
import {JobsApi} from '../../src/core/api/jobs.js'
import {ProviderApi} from '../../src/core/api/provider.js'
import {JobBiddingSection} from '../../src/core/config/job-bidding.js'
import {sha256Hex, signResultEnvelope, type KeyPair} from '../../src/core/signing.js'
import {JobsSection} from '../../src/core/config/jobs.js'
import type {Executor} from '../../src/executors/executor.js'
import {createExecutors} from '../../src/executors/index.js'
import {SpeedBook} from '../../src/executors/speed-book.js'

/**
 * An agent's §13 auction engine against a devnet over HTTP, as `outpost run` would start it, with a job runner of the
 * test's own: the won job's program and input fetched and checked, run by the real executor, the envelope signed and
 * submitted (the job loop does this in the agent). Used in-process by the e2e test and by the child process that a
 * test SIGKILLs.
 */

export interface AuctionAgentOptions {
  endpoint: string
  providerPubkey: string
  agentKey: KeyPair
  /** [jobs.bidding] as TOML would give it. */
  bidding: Record<string, unknown>
  /** The agent's state dir: the auction journal and the speed book. */
  stateDir: string
  /** The script strategy's command is resolved against this (the config file's path). */
  configPath?: string
  runSlots?: number
  /** A won job is held this long before it is run (a long job, as the capacity test needs). */
  holdMs?: number
  log?: (line: LogLine) => void
  /** Executors shared by agents of one process (started and measured once); default: the agent's own. */
  executors?: Map<JobKind, Executor>
}

export interface LogLine {
  level: string
  msg: string
  [key: string]: unknown
}

export interface AuctionAgent {
  engine: AuctionEngine
  registry: Registry
  logs: LogLine[]
  /** Results submitted: job id → verdict. */
  verdicts: Map<string, string>
  stop(): Promise<void>
}

const RETRY = {retries: 2, baseDelayMs: 100, maxDelayMs: 500}

function recordingLog(lines: LogLine[], forward?: (line: LogLine) => void): AgentLog {
  const at = (level: string) => (details: Record<string, unknown>, msg: string) => {
    const line = {level, msg, time: Date.now(), ...details}
    lines.push(line)
    forward?.(line)
  }
  return {debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error')}
}

/** The heartbeat that makes the devnet offer this provider quantum and zk jobs (the job loop sends it in the agent). */
export async function heartbeatJobs(endpoint: string, providerPubkey: string, agentKey: KeyPair): Promise<void> {
  const api = new ProviderApi(new ApiClient({endpoint, key: agentKey, retry: RETRY}), providerPubkey)
  await api.heartbeat({
    version: 'test',
    provisioner_type: 'local',
    capabilities: ['job:quantum_circuit', 'job:zk_proof'],
    active_contracts: 0,
    capacity: {cpu_cores: 8, memory_mb: 16_384, storage_gb: 100, gpu_count: 0},
  })
}

export async function startAuctionAgent(options: AuctionAgentOptions): Promise<AuctionAgent> {
  const client = new ApiClient({endpoint: options.endpoint, key: options.agentKey, retry: RETRY, timeoutMs: 10_000})
  const api = new JobsApi(client, options.providerPubkey)
  const jobs = JobsSection.parse({enabled: true, kinds: ['quantum_circuit', 'zk_proof']})
  const own = options.executors === undefined
  const executors = options.executors ?? createExecutors(jobs, {configPath: join(options.stateDir, 'outpost.toml'), stateDir: options.stateDir, speed: new SpeedBook(join(options.stateDir, 'executor-speed.json'))})
  const config = JobBiddingSection.parse(options.bidding)
  const registry = new Registry()
  const logs: LogLine[] = []
  const verdicts = new Map<string, string>()
  const log = recordingLog(logs, options.log)

  const runWon = async ({job, lease}: WonJob, signal: AbortSignal): Promise<void> => {
    if (options.holdMs) await sleep(options.holdMs, undefined, {signal})
    const executor = executors.get(job.kind)
    if (!executor) throw new Error(`no executor for ${job.kind}`)
    const [program, input] = await Promise.all([api.program(job.program.digest, {signal}), api.input(job.job_id, {signal})])
    if (sha256Hex(program) !== job.program.digest || sha256Hex(input) !== job.input.digest) throw new Error('digest mismatch')
    const workDir = await mkdtemp(join(tmpdir(), 'outpost-auction-run-'))
    try {
      const startedAt = Date.now()
      const outcome = await executor.run({job: {...job, resources: {...job.resources, gpu_count: job.resources.gpu_count ?? 0}}, program, input, workDir, signal})
      const envelope = signResultEnvelope(options.agentKey, {
        job_id: job.job_id,
        lease_id: lease.lease_id,
        program_digest: job.program.digest,
        input_digest: job.input.digest,
        output: {digest: sha256Hex(outcome.output), size_bytes: outcome.output.length, data_b64: outcome.output.toString('base64')},
        started_at: startedAt,
        finished_at: Date.now(),
      })
      const verdict = await api.submitResult(lease.lease_id, envelope, {signal, retry: RETRY})
      verdicts.set(job.job_id, verdict.verdict)
    } finally {
      await rm(workDir, {recursive: true, force: true})
    }
  }

  const engine = new AuctionEngine({
    api,
    config,
    script: auctionPricingScript(options.configPath ?? join(options.stateDir, 'outpost.toml'), config),
    kinds: jobs.kinds,
    estimate: async (job, program, input) => executors.get(job.kind)?.estimate({job: {...job, resources: {...job.resources, gpu_count: job.resources.gpu_count ?? 0}}, program, input}),
    runSlots: options.runSlots ?? 2,
    journal: new AuctionJournal(auctionJournalPath(options.stateDir)),
    log,
    metrics: createAuctionMetrics(registry),
    onWon: runWon,
    longPollWaitSeconds: 5,
    retry: RETRY,
  })
  const stopping = new AbortController()
  const running = engine.run(stopping.signal)
  return {
    engine,
    registry,
    logs,
    verdicts,
    async stop() {
      stopping.abort()
      await running
      if (own) await closeExecutors(executors)
    },
  }
}

/** Executors measured on this machine (the qasm executor's calibration, kept in the speed book file) and started. */
export async function calibratedExecutors(speedFile: string): Promise<Map<JobKind, Executor>> {
  const jobs = JobsSection.parse({enabled: true, kinds: ['quantum_circuit', 'zk_proof']})
  const executors = createExecutors(jobs, {configPath: speedFile, stateDir: tmpdir(), speed: new SpeedBook(speedFile)})
  await executors.get('quantum_circuit')?.calibrate?.(new AbortController().signal)
  return executors
}

export async function closeExecutors(executors: Map<JobKind, Executor>): Promise<void> {
  await Promise.all([...new Set(executors.values())].map((executor) => executor.close?.()))
}
