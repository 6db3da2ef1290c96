import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'

import {planBenchmark} from '../../src/bench/run.js'
import {ApiClient} from '../../src/core/api/client.js'
import {requestChallenge, submitReport} from '../../src/core/api/benchmarks.js'
import {computeWorkDigest} from '../../src/core/benchmark-workload.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {runTasks} from '../../src/ui/tasks.js'

let server: MarketplaceServer
let dataDir: string
const mainKey = generateKeyPair()
const providerPubkey = toHex(mainKey.publicKey)
let client: ApiClient

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'outpost-bench-devnet-'))
  server = await startMarketplace({dataDir, port: 0, host: '127.0.0.1', logError: () => undefined})
  client = new ApiClient({endpoint: server.endpoint, key: mainKey, retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1}})
  await client.post('/providers', {schema: z.unknown(), body: {name: 'Bench Co', contact_email: 'bench@example.com'}})
})

afterAll(async () => {
  await server.stop()
  rmSync(dataDir, {recursive: true, force: true})
})

describe('the work digest is the one the marketplace re-computes', () => {
  it('a plan with no measurements still fetches a challenge, runs the workload and is accepted as verified', async () => {
    const plan = planBenchmark({client, providerPubkey}, {types: [], durationMs: 10, quick: true, storageDir: dataDir, submit: true})
    const lines: string[] = []
    const outcome = plan.outcome(await runTasks(plan.tasks, plan.start, 'lines', (line) => lines.push(line)))
    expect(lines).toEqual(expect.arrayContaining(['Fetch a challenge from the marketplace...', 'Submit the signed report...']))
    expect(outcome.submitted).toBe(true)
    expect(outcome.report).toMatchObject({challenge_id: outcome.challenge_id, work_digest: outcome.work_digest, verified: true, submitted_by: providerPubkey})
  })

  it('computeWorkDigest of the challenge seed is accepted; any other digest is refused and uses the challenge up', async () => {
    const challenge = await requestChallenge(client, providerPubkey)
    const digest = computeWorkDigest(challenge.seed)
    const wrong = (digest[0] === '0' ? '1' : '0') + digest.slice(1)
    await expect(submitReport(client, providerPubkey, {challenge_id: challenge.challenge_id, machine: {}, results: {}, work_digest: wrong})).rejects.toMatchObject({
      status: 400,
      apiCode: 'invalid_body',
    })
    await expect(submitReport(client, providerPubkey, {challenge_id: challenge.challenge_id, machine: {}, results: {}, work_digest: digest})).rejects.toMatchObject({
      status: 409,
      apiCode: 'challenge_used',
    })
    const fresh = await requestChallenge(client, providerPubkey)
    const report = await submitReport(client, providerPubkey, {challenge_id: fresh.challenge_id, machine: {}, results: {}, work_digest: computeWorkDigest(fresh.seed)})
    expect(report.verified).toBe(true)
  })
})
