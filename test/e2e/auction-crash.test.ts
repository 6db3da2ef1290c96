import {spawn, type ChildProcess} from 'node:child_process'
import {copyFileSync, mkdirSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {readAuctionRecords, auctionJournalPath} from '../../src/agent/bidding/auction-journal.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {systemClock} from '../../src/marketplace/clock.js'
import {REPO_ROOT} from '../support/cli.js'
import {startDevnet, waitFor, type Devnet} from '../support/marketplace.js'
import {send, type Target} from '../support/harness.js'
import {createJob, GHZ_3, jobBody, jobProvider, uploadProgram, type JobAnswer} from '../marketplace/job-fixtures.js'
import {calibratedExecutors, closeExecutors, heartbeatJobs, type LogLine} from '../support/auction-agent.js'

/**
 * An auction agent in its own process, SIGKILLed after its commitment reached the marketplace and before bidding
 * closed: started again on the same state dir, it reveals the fee and salt it journalled (fsynced before the
 * commitment was sent), wins and runs the job.
 */

let devnet: Devnet
let target: Target
let dir: string
const children: ChildProcess[] = []

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'outpost-auction-crash-'))
  devnet = await startDevnet()
  target = {endpoint: devnet.endpoint, clock: systemClock}
  // The agent's measured speed (its deadline filter needs one), as a first start would have measured it.
  await closeExecutors(await calibratedExecutors(join(dir, 'executor-speed.json')))
}, 120_000)

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  await devnet?.stop()
  rmSync(dir, {recursive: true, force: true})
})

interface Child {
  process: ChildProcess
  lines: LogLine[]
  exited: Promise<unknown>
}

function startChild(options: Record<string, unknown>): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/support/auction-agent-process.ts')], {
    cwd: REPO_ROOT,
    env: {...process.env, OUTPOST_AUCTION_AGENT: JSON.stringify(options)},
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.push(child)
  const lines: LogLine[] = []
  createInterface({input: child.stdout!}).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as LogLine)
    } catch {
      // Not a log line.
    }
  })
  return {process: child, lines, exited: new Promise((resolve) => child.once('exit', resolve))}
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  expect(await waitFor(check, timeoutMs), `waited ${timeoutMs} ms for ${what}`).toBe(true)
}

describe('an auction agent SIGKILLed between commitment and reveal', () => {
  it('reveals after the restart from its journal, wins and runs the job', async () => {
    const provider = await jobProvider(target)
    await heartbeatJobs(devnet.endpoint, provider.pk, provider.agent)
    const renter = generateKeyPair()
    const digest = await uploadProgram(target, renter, Buffer.from(GHZ_3))
    const stateDir = join(dir, 'agent')
    mkdirSync(stateDir, {recursive: true})
    copyFileSync(join(dir, 'executor-speed.json'), join(stateDir, 'executor-speed.json'))
    const options = {
      endpoint: devnet.endpoint,
      providerPubkey: provider.pk,
      agentSeedHex: toHex(provider.agent.seed),
      bidding: {max_concurrent: 2, deadline_margin_seconds: 5, quantum_circuit: {price_per_unit: '0.0001', floor: '0.4'}},
      stateDir,
    }
    const first = startChild(options)
    await until(() => first.lines.some((line) => line.msg === 'ready'), 60_000, 'the agent process started')
    const job = await createJob(
      target,
      renter,
      jobBody('quantum_circuit', digest, JSON.stringify({shots: 200, seed: 3}), {reward: {mode: 'auction', max_fee: '5'}, collateral: '1', bid_seconds: 30, reveal_seconds: 60, deadline_seconds: 240, max_attempts: 1}),
    )
    // Windows wide enough for a loaded machine: the commitment lands before bidding closes, and the restarted agent
    // (which calibrates its executors first) is up before reveals close.
    const journal = auctionJournalPath(stateDir)
    await until(() => readAuctionRecords(journal).get(job.job_id)?.acknowledged === true, 30_000, 'the commitment sent and acknowledged')
    first.process.kill('SIGKILL')
    await first.exited
    const auction = async () =>
      (await send<{phase: string; bids: {provider_pubkey: string}[]; reveals: {provider_pubkey: string}[]; winner?: string; clearing_fee?: string}>(target, 'GET', `/jobs/${job.job_id}/auction`)).body
    const killed = await auction()
    expect(killed.phase, 'killed before bidding closed').toBe('bidding')
    expect(killed.bids.map((bid) => bid.provider_pubkey)).toEqual([provider.pk])
    expect(first.lines.some((line) => typeof line.msg === 'string' && line.msg.startsWith('auction: revealed'))).toBe(false)

    const second = startChild(options)
    await until(async () => (await auction()).reveals.some((reveal) => reveal.provider_pubkey === provider.pk), 90_000, 'the reveal after the restart')
    expect(second.lines.some((line) => line.msg === `auction: revealed fee 0.4 for job ${job.job_id}`)).toBe(true)
    // Alone in the auction, it is paid its own fee, and runs the job it won.
    await until(async () => (await send<JobAnswer>(target, 'GET', `/jobs/${job.job_id}`, {key: renter})).body.status === 'completed', 150_000, 'the won job run (after reveals close)')
    expect(await auction()).toMatchObject({winner: provider.pk, clearing_fee: '0.4'})
    second.process.kill('SIGTERM')
    await second.exited
  }, 300_000)
})
