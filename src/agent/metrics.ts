import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {collectDefaultMetrics, Counter, Gauge, Histogram, Registry} from 'prom-client'

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
}

export function createMetrics(): AgentMetrics {
  const registry = new Registry()
  collectDefaultMetrics({register: registry, prefix: 'outpost_agent_'})
  const registers = [registry]
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
      registers,
    }),
    bidPrice: new Histogram({
      name: 'outpost_agent_bid_price_per_hour',
      help: 'Prices bid per hour, in tokens',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 100],
      registers,
    }),
    bidOutcomes: new Counter({name: 'outpost_agent_bid_outcomes_total', help: 'Bids settled when their order closed, by outcome (won, lost)', labelNames: ['outcome'], registers}),
    openBids: new Gauge({name: 'outpost_agent_open_bids', help: 'Bids on orders still open; their capacity is promised', registers}),
    wonUnprovisioned: new Gauge({name: 'outpost_agent_won_unprovisioned_orders', help: 'Won orders whose contract is not provisioned yet; their capacity is promised', registers}),
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
