import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {collectDefaultMetrics, Counter, Gauge, Histogram, Registry} from 'prom-client'

import type {GpuReading} from '../gpu/metrics.js'

export type ContractResult = 'provisioned' | 'failed' | 'skipped' | 'interrupted' | 'terminated'

/** What the agent measures. Prometheus names follow `outpost_agent_<what>_<unit>`. */
export interface AgentMetrics {
  readonly registry: Registry
  contracts: Counter<'result'>
  timeToReady: Histogram
  reactionLatency: Histogram
  outboxDepth: Gauge
  lastHeartbeat: Gauge
  apiErrors: Counter<'code'>
  orphanInstances: Gauge
  activeContracts: Gauge
  /** Accepted contracts the marketplace holds back for the stake tier (when it says how many). */
  tierLimitedContracts: Gauge
  /** Contracts of dead sibling agents this agent looks after. */
  adoptedContracts: Gauge
  /** 1 while the state disk is full (no new work is taken). */
  stateDiskFull: Gauge
  /** §11 bidding: one count per order decided, by decision (bid, declined) and reason (the strategy, or why not). */
  bidDecisions: Counter<'decision' | 'reason'>
  bidPrice: Histogram
  bidOutcomes: Counter<'outcome'>
  openBids: Gauge
  wonUnprovisioned: Gauge
  /** §12 job markets (exported only with [jobs] enabled). */
  jobsLeased: Counter<'kind'>
  /** Verdicts by kind, verdict (accepted, rejected) and the rejection's reason. */
  jobResults: Counter<'kind' | 'verdict' | 'reason'>
  jobsExpired: Counter<'kind'>
  /** Leases this agent failed (the job could not run here, or not in time). */
  jobsFailed: Counter<'kind'>
  jobTimeToResult: Histogram<'kind'>
  jobExecutorSeconds: Histogram<'kind'>
  jobReactionLatency: Histogram
  jobRewards: Counter
  activeLeases: Gauge
}

const PREFIX = 'outpost_agent_'

/**
 * prom-client's default metrics, less the three gauges it names `*_total` (active handles, requests and resources):
 * a `_total` suffix means a counter, so `promtool check metrics` refuses them. The same counts stay, by type, in the
 * gauges of the same names without the suffix.
 */
function collectDefaults(registry: Registry): void {
  collectDefaultMetrics({register: registry, prefix: PREFIX})
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(`${PREFIX}${name}`)
}

/** The bidding metrics are exported only when bidding is on; with it off they would only ever read zero. */
export function createMetrics(options: {bidding: boolean; jobs?: boolean}): AgentMetrics {
  const registry = new Registry()
  collectDefaults(registry)
  const registers = [registry]
  const biddingRegisters = options.bidding ? registers : []
  const jobRegisters = options.jobs ? registers : []
  const jobSeconds = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600]
  return {
    registry,
    contracts: new Counter({name: 'outpost_agent_contracts_total', help: 'Contracts handled, by result', labelNames: ['result'], registers}),
    timeToReady: new Histogram({
      name: 'outpost_agent_time_to_ready_seconds',
      help: 'From contract creation to its provisioned report being accepted',
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900],
      registers,
    }),
    reactionLatency: new Histogram({
      name: 'outpost_agent_reaction_latency_seconds',
      help: 'From contract creation to this agent holding its lock',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    outboxDepth: new Gauge({name: 'outpost_agent_outbox_depth', help: 'Reports written and not yet accepted by the marketplace', registers}),
    lastHeartbeat: new Gauge({name: 'outpost_agent_last_heartbeat_timestamp_seconds', help: 'When the marketplace last acknowledged a heartbeat', registers}),
    apiErrors: new Counter({name: 'outpost_agent_api_errors_total', help: 'Failed marketplace requests, by error code', labelNames: ['code'], registers}),
    orphanInstances: new Gauge({name: 'outpost_agent_orphan_instances', help: 'Instances the marketplace knows no contract for (last reconciliation)', registers}),
    activeContracts: new Gauge({name: 'outpost_agent_active_contracts', help: 'Provisioned, active and termination-pending contracts', registers}),
    tierLimitedContracts: new Gauge({
      name: 'outpost_agent_tier_limited_contracts',
      help: 'Accepted contracts the marketplace holds back because the stake tier allows no more at once',
      registers,
    }),
    adoptedContracts: new Gauge({name: 'outpost_agent_adopted_contracts', help: 'Contracts of dead sibling agents looked after by this agent', registers}),
    stateDiskFull: new Gauge({name: 'outpost_agent_state_disk_full', help: '1 while the state disk is full: no new contracts are taken', registers}),
    bidDecisions: new Counter({
      name: 'outpost_agent_bid_decisions_total',
      help: 'Open orders decided: bid (reason: the pricing strategy) or declined (reason: why)',
      labelNames: ['decision', 'reason'],
      registers: biddingRegisters,
    }),
    bidPrice: new Histogram({
      name: 'outpost_agent_bid_price_per_hour',
      help: 'Prices bid per hour, in tokens',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 100],
      registers: biddingRegisters,
    }),
    bidOutcomes: new Counter({name: 'outpost_agent_bid_outcomes_total', help: 'Bids settled when their order closed, by outcome (won, lost)', labelNames: ['outcome'], registers: biddingRegisters}),
    openBids: new Gauge({name: 'outpost_agent_open_bids', help: 'Bids on orders still open; their capacity is promised', registers: biddingRegisters}),
    wonUnprovisioned: new Gauge({name: 'outpost_agent_won_unprovisioned_orders', help: 'Won orders whose contract is not provisioned yet; their capacity is promised', registers: biddingRegisters}),
    jobsLeased: new Counter({name: 'outpost_agent_jobs_leased_total', help: 'Jobs leased, by kind', labelNames: ['kind'], registers: jobRegisters}),
    jobResults: new Counter({
      name: 'outpost_agent_job_results_total',
      help: 'Results the marketplace gave a verdict on, by kind, verdict and (for a rejection) reason',
      labelNames: ['kind', 'verdict', 'reason'],
      registers: jobRegisters,
    }),
    jobsExpired: new Counter({name: 'outpost_agent_jobs_expired_total', help: 'Leases that expired before their result was in, by kind', labelNames: ['kind'], registers: jobRegisters}),
    jobsFailed: new Counter({name: 'outpost_agent_jobs_failed_total', help: 'Leases failed by this agent (could not run here, or not in time), by kind', labelNames: ['kind'], registers: jobRegisters}),
    jobTimeToResult: new Histogram({name: 'outpost_agent_job_time_to_result_seconds', help: 'From a lease to the verdict on its result', labelNames: ['kind'], buckets: jobSeconds, registers: jobRegisters}),
    jobExecutorSeconds: new Histogram({name: 'outpost_agent_job_executor_seconds', help: "The executor's own time per job run", labelNames: ['kind'], buckets: jobSeconds, registers: jobRegisters}),
    jobReactionLatency: new Histogram({
      name: 'outpost_agent_job_reaction_latency_seconds',
      help: 'From job creation to this agent holding its lease',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: jobRegisters,
    }),
    jobRewards: new Counter({name: 'outpost_agent_job_rewards_total', help: 'Rewards of accepted results, in tokens', registers: jobRegisters}),
    activeLeases: new Gauge({name: 'outpost_agent_active_leases', help: 'Leases held and in progress here', registers: jobRegisters}),
  }
}

export interface ProbeServer {
  url: string
  close(): Promise<void>
}

/** /metrics, /healthz (the process answers) and /readyz (the agent has reached the marketplace and resumed its work). */
export async function startProbeServer(listen: string, metrics: AgentMetrics, isReady: () => boolean): Promise<ProbeServer> {
  const separator = listen.lastIndexOf(':')
  const host = listen.slice(0, separator)
  const port = Number(listen.slice(separator + 1))
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0]
    if (request.method !== 'GET') {
      response.writeHead(405).end()
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => response.writeHead(200, {'content-type': metrics.registry.contentType}).end(text),
        () => response.writeHead(500).end(),
      )
    } else if (path === '/healthz') {
      response.writeHead(200, {'content-type': 'text/plain'}).end('ok\n')
    } else if (path === '/readyz') {
      const ready = isReady()
      response.writeHead(ready ? 200 : 503, {'content-type': 'text/plain'}).end(ready ? 'ready\n' : 'not ready\n')
    } else {
      response.writeHead(404).end()
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  return {
    url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

/** One physical GPU's readings, with the contracts and jobs holding it (or one of its MIG devices). */
export interface HeldGpuReading extends GpuReading {
  holders: string[]
}

const GPU_LABELS = ['gpu', 'uuid', 'contract_id', 'job_id'] as const

/**
 * Per-GPU utilisation, memory used, temperature and power, read once per scrape and labelled with the contract
 * (`contract_id`) or job (`job_id`) holding the device. A reading the device does not give is left out, and a scrape
 * whose read fails has no GPU series (the failure is counted in `outpost_agent_gpu_read_errors_total`).
 */
export function registerGpuMetrics(registry: Registry, read: () => Promise<HeldGpuReading[]>): void {
  let scrape: {answer: Promise<HeldGpuReading[]>; settled: boolean} | undefined
  const readErrors = new Counter({
    name: 'outpost_agent_gpu_read_errors_total',
    help: 'Scrapes whose GPU readings could not be had',
    registers: [registry],
    // Counted in the scrape whose read failed.
    async collect() {
      await readings()
    },
  })
  // A scrape starts the four gauges' collects in one tick: the first asks, the others share its answer, which can't
  // have settled yet; a collect that finds a settled answer belongs to the next scrape and asks again.
  const readings = (): Promise<HeldGpuReading[]> => {
    if (scrape && !scrape.settled) return scrape.answer
    const current = {
      answer: read().catch(() => {
        readErrors.inc()
        return []
      }),
      settled: false,
    }
    void current.answer.finally(() => (current.settled = true))
    scrape = current
    return current.answer
  }
  const gauge = (name: string, help: string, value: (reading: HeldGpuReading) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: GPU_LABELS,
      registers: [registry],
      async collect() {
        this.reset()
        for (const reading of await readings()) {
          const measured = value(reading)
          if (measured !== undefined) this.set(gpuLabels(reading), measured)
        }
      },
    })
  gauge('outpost_agent_gpu_utilization_percent', 'Time a kernel ran on the GPU over the last sample period, percent', (reading) => reading.utilizationPercent)
  gauge('outpost_agent_gpu_memory_used_bytes', 'GPU memory in use', (reading) => (reading.memoryUsedMib === undefined ? undefined : reading.memoryUsedMib * 1024 * 1024))
  gauge('outpost_agent_gpu_temperature_celsius', 'GPU core temperature', (reading) => reading.temperatureCelsius)
  gauge('outpost_agent_gpu_power_watts', 'GPU power draw', (reading) => reading.powerWatts)
}

function gpuLabels(reading: HeldGpuReading): Record<(typeof GPU_LABELS)[number], string> {
  const of = (prefix: string) =>
    reading.holders
      .filter((holder) => holder.startsWith(prefix))
      .map((holder) => holder.slice(prefix.length))
      .join(',')
  return {gpu: String(reading.index), uuid: reading.uuid, contract_id: of('contract:'), job_id: of('job:')}
}
