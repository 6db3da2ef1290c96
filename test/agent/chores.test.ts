import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {Chores, type ChoreSettings} from '../../src/agent/chores.js'
import {createMetrics} from '../../src/agent/metrics.js'
import {listReports} from '../../src/core/api/benchmarks.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {client, registerProvider, startDevnet, waitFor, type Devnet} from '../support/marketplace.js'
import {RecordingLog} from './fakes.js'

/** The daemon's scheduled benchmark (`[agent] benchmark_every`) against a real devnet: submitted, then not again before it is due. */

let devnet: Devnet
const stateDir = mkdtempSync(join(tmpdir(), 'outpost-chores-'))

beforeAll(async () => {
  devnet = await startDevnet()
})

afterAll(async () => {
  await devnet?.stop()
  rmSync(stateDir, {recursive: true, force: true})
})

describe('Chores: benchmark_every', () => {
  it('submits a benchmark with the agent key, records when, and a restart does not run it again before it is due', async () => {
    const mainKey = generateKeyPair()
    const agentKey = generateKeyPair()
    const {providerPubkey} = await registerProvider(devnet.endpoint, mainKey, [agentKey])
    const session = {client: client(devnet.endpoint, agentKey), providerPubkey}
    const settings: ChoreSettings = {
      archiveDays: 0,
      benchmark: {everyMs: 3_600_000, settings: {types: ['cpu', 'memory'], durationMs: 50, quick: true, storageDir: stateDir, submit: true}},
    }
    const start = () => {
      const log = new RecordingLog()
      const metrics = createMetrics({bidding: false, stateDir})
      const chores = new Chores({session, agentPubkey: toHex(agentKey.publicKey), stateDir, log, metrics, settings})
      chores.start()
      return {chores, log, metrics}
    }

    const first = start()
    expect(await waitFor(async () => (await listReports(session.client, providerPubkey)).length === 1, 30_000)).toBe(true)
    expect(await waitFor(() => first.log.lines.some((line) => line.details.chore === 'benchmark' && line.details.submitted === true), 10_000)).toBe(true)
    await first.chores.stop()
    const recorded = JSON.parse(readFileSync(join(stateDir, 'chores.json'), 'utf8')) as {last_run: {benchmark: number}}
    expect(Math.abs(Date.now() - recorded.last_run.benchmark)).toBeLessThan(60_000)
    expect(await first.metrics.registry.getSingleMetricAsString('outpost_agent_chores_total')).toMatch(/chore="benchmark",result="ok"} 1/)

    // Restarted at once: the delegation is checked again, the benchmark is not due for an hour.
    const second = start()
    expect(await waitFor(() => second.log.lines.some((line) => line.details.chore === 'delegation_check'), 10_000)).toBe(true)
    await second.chores.stop()
    expect(await listReports(session.client, providerPubkey)).toHaveLength(1)
    expect(second.log.lines.some((line) => line.details.chore === 'benchmark')).toBe(false)
  }, 60_000)
})
