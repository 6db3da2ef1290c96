import {appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {BidPreview} from '../../src/agent/bidding/preview.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {systemClock} from '../../src/marketplace/clock.js'
import {parseJson, runCli} from '../support/cli.js'
import {initProvider, parseLogLines, startAgent, startDevnet, waitFor, type AgentProcess, type Devnet, type ProviderSetup} from '../support/marketplace.js'
import {send, type Target} from '../support/harness.js'
import {createJob, GHZ_3, jobBody, uploadProgram, type JobAnswer} from '../marketplace/job-fixtures.js'
import {heartbeatJobs} from '../support/auction-agent.js'
import {jobAgentEnv} from '../support/job-run.js'

/**
 * `outpost run` (the built CLI) with [jobs.bidding]: two agents of two providers bid in §13 auctions, the cheaper
 * wins each job, its job loop runs it, and it is paid the other's fee. The agents measure their speed on their own
 * (no speed book is given to them).
 */

let devnet: Devnet
let target: Target
let temp: string
const agents: AgentProcess[] = []

beforeAll(async () => {
  temp = mkdtempSync(join(tmpdir(), 'outpost-agent-auctions-'))
  devnet = await startDevnet()
  target = {endpoint: devnet.endpoint, clock: systemClock}
})

afterAll(async () => {
  for (const agent of agents) agent.kill('SIGKILL')
  await Promise.all(agents.map((agent) => agent.exited))
  await devnet?.stop()
  rmSync(temp, {recursive: true, force: true})
})

function withBidding(setup: ProviderSetup, floor: string): void {
  appendFileSync(
    join(setup.configDir, 'outpost.toml'),
    ['', '[jobs.bidding]', 'max_concurrent = 4', 'deadline_margin_seconds = 5', '', '[jobs.bidding.quantum_circuit]', 'price_per_unit = "0.0001"', `floor = "${floor}"`, ''].join('\n'),
  )
}

function agent(setup: ProviderSetup, name: string): AgentProcess {
  const logFile = join(process.env.OUTPOST_TEST_LOG_DIR ?? temp, `${name}.log`)
  writeFileSync(logFile, '')
  const started = startAgent(jobAgentEnv(setup.configDir, {OUTPOST_JOBS_KINDS: '["quantum_circuit"]'}), logFile)
  agents.push(started)
  return started
}

describe('outpost run with [jobs.bidding]', () => {
  it('`outpost bid preview` lists the open auction jobs with the decision [jobs.bidding] makes now, committing to nothing', async () => {
    // No agent runs for this provider: its heartbeat is sent here.
    const watcher = await initProvider(devnet.endpoint)
    await heartbeatJobs(devnet.endpoint, watcher.providerPubkey, watcher.agentKey)
    withBidding(watcher, '0.1')
    const renter = generateKeyPair()
    const digest = await uploadProgram(target, renter, Buffer.from(GHZ_3))
    const job = await createJob(
      target,
      renter,
      jobBody('quantum_circuit', digest, JSON.stringify({shots: 100, seed: 1}), {reward: {mode: 'auction', max_fee: '2'}, collateral: '1', bid_seconds: 120, reveal_seconds: 10, deadline_seconds: 300}),
    )
    const preview = async () => {
      const answer = await runCli(['bid', 'preview', '--json'], {env: {...jobAgentEnv(watcher.configDir, {OUTPOST_JOBS_KINDS: '["quantum_circuit"]'}), OUTPOST_METRICS_LISTEN: undefined}})
      expect(answer.exitCode, answer.stdout + answer.stderr).toBe(0)
      return parseJson<BidPreview>(answer).auctions
    }
    // Never measured here (the agent measures when it starts): no estimate, so the deadline can't be checked.
    const unmeasured = await preview()
    expect(unmeasured).toMatchObject({strategy: 'builtin', promised: 0})
    expect(unmeasured?.jobs.find((item) => item.job_id === job.job_id)).toMatchObject({decision: 'declined', reason: 'no_estimate'})
    const config = join(watcher.configDir, 'outpost.toml')
    writeFileSync(config, readFileSync(config, 'utf8').replace('[jobs.bidding]\n', `[jobs.bidding]\nprogram_deny = ["${digest}"]\n`))
    expect((await preview())?.jobs.find((item) => item.job_id === job.job_id)).toMatchObject({decision: 'declined', reason: 'program_denied'})
    // Nothing was committed.
    expect((await send<{bids: unknown[]}>(target, 'GET', `/jobs/${job.job_id}/auction`)).body.bids).toEqual([])
  }, 60_000)

  it('two agents bid on auction jobs; the cheaper wins each, runs it with its job loop and is paid the second-lowest fee', async () => {
    const cheap = await initProvider(devnet.endpoint)
    const dear = await initProvider(devnet.endpoint)
    withBidding(cheap, '0.4')
    withBidding(dear, '0.7')
    const cheapAgent = agent(cheap, 'cheap')
    const dearAgent = agent(dear, 'dear')
    // Each agent measures its speed when it starts; the auctions open once both can check deadlines.
    for (const running of [cheapAgent, dearAgent]) {
      const measured = await waitFor(() => parseLogLines(running.logFile).some((line) => line.msg === 'auction: measured this machine for quantum_circuit jobs'), 90_000, 250)
      expect(measured, readFileSync(running.logFile, 'utf8').slice(-3000)).toBe(true)
    }
    const renter = generateKeyPair()
    const digest = await uploadProgram(target, renter, Buffer.from(GHZ_3))
    const jobs: JobAnswer[] = []
    for (let index = 0; index < 3; index++) {
      jobs.push(
        await createJob(
          target,
          renter,
          jobBody('quantum_circuit', digest, JSON.stringify({shots: 100 + index, seed: index}), {
            reward: {mode: 'auction', max_fee: '2'},
            collateral: '1',
            bid_seconds: 15,
            reveal_seconds: 8,
            deadline_seconds: 180,
            max_attempts: 1,
          }),
        ),
      )
    }

    const jobOf = async (id: string) => (await send<JobAnswer>(target, 'GET', `/jobs/${id}`, {key: renter})).body
    const done = await waitFor(async () => (await Promise.all(jobs.map((job) => jobOf(job.job_id)))).every((job) => job.status === 'completed'), 100_000, 500)
    expect(done, `${readFileSync(cheapAgent.logFile, 'utf8').slice(-3000)}\n${readFileSync(dearAgent.logFile, 'utf8').slice(-3000)}`).toBe(true)
    for (const job of jobs) {
      const auction = (await send<{winner?: string; clearing_fee?: string}>(target, 'GET', `/jobs/${job.job_id}/auction`)).body
      expect(auction).toMatchObject({winner: cheap.providerPubkey, clearing_fee: '0.7'})
      expect((await jobOf(job.job_id)).verdict).toMatchObject({verdict: 'accepted', reward: '0.7'})
    }
    const lines = (agentProcess: AgentProcess) => parseLogLines(agentProcess.logFile).map((line) => String(line.msg))
    for (const job of jobs) {
      expect(lines(cheapAgent)).toContain(`auction: won job ${job.job_id} at clearing fee 0.7 (bid 0.4)`)
      expect(lines(dearAgent).filter((line) => line.startsWith(`auction: lost job ${job.job_id}`))).toHaveLength(1)
    }
    expect(lines(cheapAgent).filter((line) => line === 'won job leased')).toHaveLength(3)
  }, 240_000)
})
