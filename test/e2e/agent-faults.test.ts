import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'

import {fastAgentEnv, initProvider, killInstances, renter, startAgent, waitFor, startDevnet, type AgentProcess, type Devnet, type ProviderSetup} from '../support/marketplace.js'
import {billing, outboxEntries, settleRunning} from '../support/agent-run.js'
import {startFaultProxy, type FaultProxy, type FaultRule} from '../support/fault-proxy.js'

/**
 * The built agent behind a proxy that breaks the marketplace's answers (test/support/fault-proxy.ts). Whatever the
 * faults, at the end: every contract not cancelled has exactly one live instance, every cancelled one is terminated
 * on the marketplace with none, the outbox is empty, and billed seconds cover provisioned seconds.
 */

/** Every route of the agent (§§5 and 7), under /api/v1. */
const AGENT_ROUTES = /^\/providers\/[0-9a-f]{64}\//

let devnet: Devnet
let provider: ProviderSetup
const ids: string[] = []
const logDir = mkdtempSync(join(tmpdir(), 'outpost-agent-faults-'))
let proxy: FaultProxy | undefined
let agent: AgentProcess | undefined

beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
})

afterEach(async () => {
  agent?.kill('SIGKILL')
  await agent?.exited
  agent = undefined
  await proxy?.close()
  proxy = undefined
})

afterAll(async () => {
  killInstances(ids)
  await devnet?.stop()
  rmSync(provider?.configDir ?? '/nonexistent', {recursive: true, force: true})
  rmSync(logDir, {recursive: true, force: true})
})

/**
 * One run: `count` contracts through an agent behind `rules`; `cancelEarly` of them cancelled once provisioned, the rest
 * at the end; the invariants checked at both points. Returns the numbers for the report.
 */
async function faultRun(name: string, rules: FaultRule[], options: {count: number; cancelEarly: number}) {
  proxy = await startFaultProxy(devnet.endpoint, rules)
  const logFile = join(logDir, `${name}.log`)
  const env = fastAgentEnv(provider.configDir, {
    OUTPOST_MARKETPLACE_ENDPOINT: proxy.endpoint,
    // A stalled request is given up after 2 s (long polls after their wait, plus 2 s).
    OUTPOST_MARKETPLACE_REQUEST_TIMEOUT_SECONDS: '2',
  })
  agent = startAgent(env, logFile)
  const tail = () => `seed ${proxy?.seed}, fired ${JSON.stringify(proxy?.fired)}\n${readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n')}`
  const buyer = renter(devnet.endpoint)
  const mine: string[] = []
  for (let index = 0; index < options.count; index++) mine.push((await buyer.create(provider.offeringId)).contract_id)
  ids.push(...mine)

  const cancelled = new Set<string>()
  expect(await settleRunning(devnet.dataDir, mine, cancelled, 90_000), tail()).toEqual([])
  for (const id of mine.slice(0, options.cancelEarly)) {
    await buyer.cancel(id)
    cancelled.add(id)
  }
  expect(await settleRunning(devnet.dataDir, mine, cancelled, 60_000), tail()).toEqual([])

  // The rest end too, so every contract's usage can be held against its whole provisioned time.
  for (const id of mine.slice(options.cancelEarly)) {
    await buyer.cancel(id)
    cancelled.add(id)
  }
  expect(await settleRunning(devnet.dataDir, mine, cancelled, 60_000), tail()).toEqual([])
  const stateDir = join(provider.configDir, 'state')
  expect(await waitFor(() => outboxEntries(stateDir).length === 0, 60_000), tail()).toBe(true)
  const billed = billing(devnet.dataDir, mine)
  expect(billed.gaps, tail()).toEqual([])
  expect(billed.billedSeconds).toBeGreaterThanOrEqual(billed.provisionedSeconds)

  agent.kill('SIGTERM')
  expect((await agent.exited).code, tail()).toBe(0)
  agent = undefined
  const log = readFileSync(logFile, 'utf8')
  expect(log).not.toContain('MaxListenersExceededWarning')
  const summary = {name, contracts: options.count, seed: proxy.seed, requests: proxy.totals.requests, broken: proxy.totals.broken, fired: proxy.fired, ...billed}
  console.log(`fault run: ${JSON.stringify(summary)}`)
  return {log, summary}
}

describe('outpost run behind a faulty network', () => {
  it('takes a cut-off 2xx for unknown, never a refusal: confirms it from the marketplace state and destroys nothing', {timeout: 240_000}, async () => {
    const {log} = await faultRun(
      'garbled-success',
      [
        // Every answer to the provisioned and terminated reports is cut off after the marketplace acted on them.
        {name: 'provisioned answer cut', fault: 'truncate', method: 'PUT', path: /\/contracts\/[0-9a-f]{32}\/provisioning$/, body: /"status":"provisioned"/},
        {name: 'terminated answer cut', fault: 'truncate', method: 'PUT', path: /\/contracts\/[0-9a-f]{32}\/terminated$/},
        {name: 'lock answer cut', fault: 'truncate', method: 'POST', path: /\/contracts\/[0-9a-f]{32}\/lock$/, rate: 0.5},
      ],
      {count: 6, cancelEarly: 2},
    )
    // Ended contracts are still terminated by reconcile; only an unconfirmed report must never destroy a machine.
    expect(log).not.toContain('its state does not show this instance: terminating it')
    expect(log).toContain("the marketplace's state shows the report took effect")
  })

  it('keeps every invariant with 30% of the agent\'s requests broken (drops, stalls, 5xx, HTML pages, cut-off 2xx)', {timeout: 300_000}, async () => {
    const each = 0.07
    const {summary} = await faultRun(
      'mixed-30',
      [
        {name: 'drop after', fault: 'drop', path: AGENT_ROUTES, rate: each},
        {name: 'stall before', fault: 'stall', phase: 'request', stallMs: 30_000, path: AGENT_ROUTES, rate: each},
        {name: '503', fault: '5xx', status: 503, path: AGENT_ROUTES, rate: each},
        {name: 'html 502 after', fault: 'html', path: AGENT_ROUTES, rate: each},
        {name: 'truncated 2xx', fault: 'truncate', path: AGENT_ROUTES, rate: each},
      ],
      {count: 24, cancelEarly: 11},
    )
    expect(summary.broken / summary.requests).toBeGreaterThan(0.2)
  })
})
