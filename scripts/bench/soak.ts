import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {metricValue} from '../../test/support/agent-run.js'
import {fastAgentEnv, initProvider, killInstances, metricsUrl, renter, startAgent, startDevnet, type AgentProcess} from '../../test/support/marketplace.js'
import {PERL_LISTENER, residentMemory, sleep} from './processes.js'
import type {BenchRow, BenchSection} from './types.js'

/**
 * The agent's memory over a soak with contracts coming and going: the built CLI's `run` on the local backend (a tiny
 * perl listener per contract), a renter creating CREATE_PER_SECOND contracts a second and cancelling each one
 * LIFETIME_SECONDS later, the agent's RSS sampled every SAMPLE_SECONDS after a warm-up, and the least-squares slope
 * of RSS over time. Beside it, the slope of the JS heap in use (from the agent's /metrics, scraped at each sample): RSS
 * that grows while the heap stays flat is the allocator and V8 keeping pages, not objects the agent keeps.
 * OUTPOST_BENCH_SOAK_MINUTES=30 for the issue's half hour (the default keeps `npm run bench` short).
 */
const SOAK_MINUTES = Number(process.env.OUTPOST_BENCH_SOAK_MINUTES ?? 5)
const WARM_UP_SECONDS = 60
const SAMPLE_SECONDS = 10
const CREATE_PER_SECOND = 2
const LIFETIME_SECONDS = 30
/** Flat: less than this growth per hour, GC noise included. */
const SLOPE_GOAL_MIB_PER_HOUR = 5

/** Slope of y over x by least squares. */
function slope(points: {x: number; y: number}[]): number {
  const n = points.length
  const meanX = points.reduce((sum, point) => sum + point.x, 0) / n
  const meanY = points.reduce((sum, point) => sum + point.y, 0) / n
  const covariance = points.reduce((sum, point) => sum + (point.x - meanX) * (point.y - meanY), 0)
  const variance = points.reduce((sum, point) => sum + (point.x - meanX) ** 2, 0)
  return variance === 0 ? 0 : covariance / variance
}

export const soakBench: BenchSection = async () => {
  const group = 'soak'
  const devnet = await startDevnet({rateLimitPerSecond: 1e6, addressRateLimitPerSecond: 1e6})
  const provider = await initProvider(devnet.endpoint)
  const logDir = mkdtempSync(join(tmpdir(), 'outpost-bench-soak-'))
  const ids: string[] = []
  let agent: AgentProcess | undefined
  const timers = new Set<NodeJS.Timeout>()
  try {
    agent = startAgent(
      fastAgentEnv(provider.configDir, {OUTPOST_AGENT_LONG_POLL_WAIT_SECONDS: '25', OUTPOST_AGENT_MAX_CONCURRENT_PROVISIONS: '16', OUTPOST_PROVISIONER_LOCAL_COMMAND: JSON.stringify(PERL_LISTENER)}),
      join(logDir, 'soak.log'),
    )
    const pid = agent.pid
    const metrics = await metricsUrl(agent)
    const buyer = renter(devnet.endpoint)
    const started = Date.now()
    const end = started + SOAK_MINUTES * 60_000
    const samples: {x: number; y: number}[] = []
    const heapSamples: {x: number; y: number}[] = []
    let nextSample = started + WARM_UP_SECONDS * 1000
    let failures = 0
    while (Date.now() < end) {
      for (let index = 0; index < CREATE_PER_SECOND; index++) {
        void buyer.create(provider.offeringId).then(
          (contract) => {
            ids.push(contract.contract_id)
            const timer = setTimeout(() => {
              timers.delete(timer)
              void buyer.cancel(contract.contract_id).catch(() => failures++)
            }, LIFETIME_SECONDS * 1000)
            timers.add(timer)
          },
          () => failures++,
        )
      }
      if (Date.now() >= nextSample) {
        const x = (Date.now() - started) / 3_600_000
        samples.push({x, y: residentMemory(pid).rss})
        heapSamples.push({x, y: (await metricValue(metrics, 'outpost_agent_nodejs_heap_size_used_bytes')) / 2 ** 20})
        nextSample += SAMPLE_SECONDS * 1000
      }
      await sleep(1000)
    }
    if (samples.length < 3) throw new Error(`the soak took ${samples.length} samples: give it more than ${WARM_UP_SECONDS + 3 * SAMPLE_SECONDS} s`)
    const perHour = slope(samples)
    const heapPerHour = slope(heapSamples)
    const first = samples[0]!.y
    const last = samples.at(-1)!.y
    const note = `${SOAK_MINUTES} min, ${CREATE_PER_SECOND} contracts/s each cancelled after ${LIFETIME_SECONDS} s, ${ids.length} in all${failures ? `, ${failures} renter requests failed` : ''}`
    return [
      {group, name: 'agent RSS after the warm-up', value: first, unit: 'MiB', note},
      {group, name: 'agent RSS at the end', value: last, unit: 'MiB'},
      {group, name: 'agent RSS slope (least squares)', value: perHour, unit: 'MiB/h', ratio: Math.abs(perHour) / SLOPE_GOAL_MIB_PER_HOUR, note: `goal flat: |slope| ≤ ${SLOPE_GOAL_MIB_PER_HOUR} MiB/h; ${samples.length} samples`},
      {group, name: 'agent JS heap in use after the warm-up', value: heapSamples[0]!.y, unit: 'MiB'},
      {group, name: 'agent JS heap in use at the end', value: heapSamples.at(-1)!.y, unit: 'MiB'},
      {group, name: 'agent JS heap in use, slope', value: heapPerHour, unit: 'MiB/h', note: 'what the agent keeps; RSS minus this is pages the allocator and V8 hold'},
    ] satisfies BenchRow[]
  } finally {
    for (const timer of timers) clearTimeout(timer)
    if (agent) {
      agent.kill('SIGTERM')
      await agent.exited
    }
    killInstances(ids)
    await devnet.stop()
    rmSync(provider.configDir, {recursive: true, force: true})
    rmSync(logDir, {recursive: true, force: true})
  }
}
