import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {fastAgentEnv, initProvider, killInstances, metricsUrl, renter, startAgent, startDevnet, waitFor, type AgentProcess, type Devnet, type ProviderSetup} from '../support/marketplace.js'

/** The agent's /metrics, read by Prometheus' own linter (promtool, from Debian's prometheus) on a live agent. */

let devnet: Devnet
let provider: ProviderSetup
const contractIds: string[] = []
const logDir = mkdtempSync(join(tmpdir(), 'outpost-metrics-e2e-'))

beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
})

afterAll(async () => {
  killInstances(contractIds)
  await devnet?.stop()
  if (provider) rmSync(provider.configDir, {recursive: true, force: true})
  rmSync(logDir, {recursive: true, force: true})
})

async function promtool(text: string): Promise<{exitCode: number; output: string}> {
  const result = await execa('promtool', ['check', 'metrics'], {input: text, reject: false})
  return {exitCode: result.exitCode ?? -1, output: `${String(result.stdout)}${String(result.stderr)}`}
}

/** Runs the built CLI's `outpost run`, provisions one contract with it, and returns its /metrics text. */
async function liveMetrics(name: string, env: Record<string, string> = {}): Promise<string> {
  const agent: AgentProcess = startAgent({...fastAgentEnv(provider.configDir), ...env}, join(logDir, `${name}.log`))
  try {
    const url = await metricsUrl(agent)
    const contract = await renter(devnet.endpoint).create(provider.offeringId)
    contractIds.push(contract.contract_id)
    const scrape = async () => (await fetch(url)).text()
    expect(await waitFor(async () => /^outpost_agent_contracts_total\{result="provisioned"\} [1-9]/m.test(await scrape()), 20_000, 100)).toBe(true)
    return await scrape()
  } finally {
    agent.kill('SIGTERM')
    await agent.exited
  }
}

describe("promtool check metrics on a live agent's /metrics (built CLI, real devnet)", () => {
  it('passes with bidding off, and exports no bidding metrics', async () => {
    const text = await liveMetrics('bidding-off')
    const checked = await promtool(text)
    expect(checked.exitCode, checked.output).toBe(0)
    expect(checked.output).toBe('')
    expect(text).toMatch(/^outpost_agent_time_to_ready_seconds_bucket\{le="\+Inf"\} [1-9]/m)
    // The counts prom-client also names `*_total` stay, by type, in gauges without the suffix.
    expect(text).toMatch(/^# TYPE outpost_agent_nodejs_active_handles gauge$/m)
    expect(text).not.toMatch(/^outpost_agent_bid_|^outpost_agent_open_bids|^outpost_agent_won_unprovisioned/m)
  })

  it('passes with bidding on, which adds the bidding metrics', async () => {
    const text = await liveMetrics('bidding-on', {
      OUTPOST_BIDDING_ENABLED: 'true',
      OUTPOST_BIDDING_STRATEGY: 'fixed',
      OUTPOST_BIDDING_PRICES_CPU_CORE: '0.1',
    })
    const checked = await promtool(text)
    expect(checked.exitCode, checked.output).toBe(0)
    for (const name of ['outpost_agent_bid_price_per_hour', 'outpost_agent_bid_decisions_total', 'outpost_agent_bid_outcomes_total', 'outpost_agent_open_bids', 'outpost_agent_won_unprovisioned_orders']) {
      expect(text).toMatch(new RegExp(`^# TYPE ${name} `, 'm'))
    }
  })

  it('promtool does refuse a gauge named like a counter (so the checks above mean something)', async () => {
    const checked = await promtool('# HELP x_active_handles_total Handles\n# TYPE x_active_handles_total gauge\nx_active_handles_total 3\n')
    expect(checked.exitCode).toBe(3)
    expect(checked.output).toContain('non-counter metrics should not have "_total" suffix')
  })
})
