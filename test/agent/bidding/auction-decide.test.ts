import {appendFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {decideAuctionJob, screenCapacity, type AuctionDecideContext} from '../../../src/agent/bidding/auction-decide.js'
import {AuctionJournal} from '../../../src/agent/bidding/auction-journal.js'
import {lateRun, quoteJob, screenDeadline, screenJob} from '../../../src/agent/bidding/auction-pricing.js'
import type {Job} from '../../../src/core/api/job-schemas.js'
import {JobBiddingSection} from '../../../src/core/config/job-bidding.js'
import {sha256Hex} from '../../../src/core/signing.js'

const dir = mkdtempSync(join(tmpdir(), 'outpost-auction-unit-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

const GHZ_3 = ['OPENQASM 2.0;', 'include "qelib1.inc";', 'qreg q[3];', 'creg c[3];', 'h q[0];', 'cx q[0],q[1];', 'cx q[1],q[2];', 'measure q -> c;', ''].join('\n')
const PROGRAM = Buffer.from(GHZ_3)
const NOW = 1_800_000_000_000

function script(name: string, body: string): string {
  const path = join(dir, name)
  writeFileSync(path, `#!/bin/sh\n${body}\n`)
  chmodSync(path, 0o755)
  return path
}

const job = (overrides: Partial<Job> = {}, shots = 1000): Job & {inputBytes: Buffer} => {
  const input = Buffer.from(JSON.stringify({shots, seed: 1}))
  return {
    job_id: 'a'.repeat(32),
    kind: 'quantum_circuit',
    program: {digest: sha256Hex(PROGRAM), size_bytes: PROGRAM.length},
    input: {digest: sha256Hex(input), size_bytes: input.length},
    resources: {cpu_cores: 1, memory_mb: 512},
    reward: {mode: 'auction', max_fee: '10'},
    collateral: '1',
    deadline: NOW + 120_000,
    lease_seconds: 60,
    attempts_left: 1,
    requires_attestation: false,
    bid_closes_at: NOW + 10_000,
    reveal_closes_at: NOW + 20_000,
    created_at: NOW,
    status: 'open',
    ...overrides,
    inputBytes: input,
  }
}

const config = (overrides: Record<string, unknown> = {}) =>
  JobBiddingSection.parse({quantum_circuit: {price_per_unit: '0.0001', floor: '0.2', margin: '0.1'}, zk_proof: {price_per_unit: '0.000002'}, ...overrides})

function context(of: ReturnType<typeof job>, overrides: Partial<AuctionDecideContext> = {}): AuctionDecideContext {
  return {
    config: config(),
    kinds: ['quantum_circuit', 'zk_proof'],
    script: undefined,
    runSlots: 1,
    program: async () => PROGRAM,
    input: async () => of.inputBytes,
    estimate: async () => ({seconds: 2, basis: 'test: measured'}),
    promised: () => [],
    now: () => NOW,
    ...overrides,
  }
}

describe('the builtin cost model', () => {
  it('prices units × price per unit × (1 + margin), exactly, rounded half up once, never below the floor', () => {
    const pricing = {price_per_unit: '0.0001', floor: '0.2', margin: '0.1'}
    // 9000 units: 0.9 × 1.1 = 0.99
    expect(quoteJob('quantum_circuit', pricing, {units: 9000, describe: 'x'})).toMatchObject({fee: '0.99', micro: 990_000n})
    // 1000 units: 0.11, raised to the floor
    expect(quoteJob('quantum_circuit', pricing, {units: 1000, describe: 'x'})).toMatchObject({fee: '0.2', why: expect.stringContaining('raised to the floor 0.2')})
    // Prices below a micro-token per unit stay exact: 3 × 0.000000125 = 0.000000375 rounds to 0; 4 × = 0.0000005 rounds half up
    const tiny = {price_per_unit: '0.000000125', floor: '0', margin: '0'}
    expect(quoteJob('zk_proof', tiny, {units: 3, describe: 'x'}).fee).toBe('0')
    expect(quoteJob('zk_proof', tiny, {units: 4, describe: 'x'}).fee).toBe('0.000001')
    expect(quoteJob('zk_proof', {price_per_unit: '0.000002', floor: '0', margin: '0'}, {units: 2048, describe: 'domain 2048'}).fee).toBe('0.004096')
  })

  it('refuses unit prices and margins that are not decimals', () => {
    expect(JobBiddingSection.safeParse({zk_proof: {price_per_unit: '1e-6'}}).success).toBe(false)
    expect(JobBiddingSection.safeParse({zk_proof: {price_per_unit: '0.1', margin: '-0.1'}}).success).toBe(false)
    expect(JobBiddingSection.safeParse({strategy: 'script'}).error?.issues[0]?.message).toContain('[jobs.bidding.script] is required')
    expect(JobBiddingSection.safeParse({program_deny: ['nothex']}).success).toBe(false)
  })
})

describe('the filters', () => {
  it('decline by kind, deny list, allow list, input size and closed bidding, cheapest first', () => {
    const of = job()
    expect(screenJob(of, config(), ['zk_proof'], NOW)).toMatchObject({reason: 'kind_not_served'})
    expect(screenJob(of, config({program_deny: [of.program.digest]}), ['quantum_circuit'], NOW)).toMatchObject({reason: 'program_denied'})
    expect(screenJob(of, config({program_allow: ['b'.repeat(64)]}), ['quantum_circuit'], NOW)).toMatchObject({reason: 'program_not_allowed'})
    expect(screenJob(of, config({program_allow: [of.program.digest]}), ['quantum_circuit'], NOW)).toBeUndefined()
    expect(screenJob(of, config({max_input_bytes: 10}), ['quantum_circuit'], NOW)).toMatchObject({reason: 'input_too_large'})
    expect(screenJob(of, config(), ['quantum_circuit'], NOW + 10_000)).toMatchObject({reason: 'bidding_closed'})
  })

  it('the deadline filter counts from when reveals close (the earliest a winner may lease), with the margin', () => {
    // 100 s from the reveals' close to the deadline
    const of = job()
    expect(screenDeadline(of, {seconds: 69, basis: 'b'}, 30, NOW)).toBeUndefined()
    expect(screenDeadline(of, {seconds: 71, basis: 'b'}, 30, NOW)).toMatchObject({reason: 'deadline_too_close', detail: expect.stringContaining('100.0 s')})
  })

  it('the schedule runs promised jobs earliest deadline first on the run slots and finds the late one', () => {
    const runs = [
      {jobId: 'a', startAt: NOW, seconds: 40, deadline: NOW + 50_000},
      {jobId: 'b', startAt: NOW, seconds: 40, deadline: NOW + 100_000},
      {jobId: 'c', startAt: NOW, seconds: 40, deadline: NOW + 100_000},
    ]
    expect(lateRun(runs, 1, NOW, 0)?.jobId).toBe('c')
    expect(lateRun(runs, 2, NOW, 0)).toBeUndefined()
    expect(lateRun(runs, 2, NOW, 15)?.jobId).toBe('a')
  })

  it('max_concurrent counts commitments and won jobs not done', () => {
    const candidate = {jobId: 'new', startAt: NOW, seconds: 1, deadline: NOW + 100_000}
    const promised = [
      {jobId: 'a', startAt: NOW, seconds: 1, deadline: NOW + 100_000},
      {jobId: 'b', startAt: NOW, seconds: 1, deadline: NOW + 100_000},
    ]
    const settings = config({max_concurrent: 2})
    expect(screenCapacity(candidate, promised, settings, 4, NOW)).toMatchObject({reason: 'at_capacity'})
    expect(screenCapacity(candidate, promised.slice(1), settings, 4, NOW)).toBeUndefined()
  })
})

describe('decideAuctionJob', () => {
  it('prices a circuit by shots × width × depth and commits below max_fee', async () => {
    const of = job({}, 3000)
    // GHZ_3: width 3, depth 3 → 27000 units × 0.0001 × 1.1 = 2.97
    expect(await decideAuctionJob(of, context(of))).toMatchObject({kind: 'commit', fee: '2.97', why: expect.stringContaining('3000 shots × width 3 × depth 3')})
  })

  it('declines above max_fee, without an estimate, without a cost model, and when the deadline is too close', async () => {
    const big = job({reward: {mode: 'auction', max_fee: '1'}}, 3000)
    expect(await decideAuctionJob(big, context(big))).toMatchObject({kind: 'declined', reason: 'above_max_fee'})
    const of = job()
    expect(await decideAuctionJob(of, context(of, {estimate: async () => undefined}))).toMatchObject({reason: 'no_estimate'})
    expect(await decideAuctionJob(of, context(of, {config: config({quantum_circuit: undefined})}))).toMatchObject({reason: 'no_cost_model'})
    expect(await decideAuctionJob(of, context(of, {estimate: async () => ({seconds: 90, basis: 'slow'})}))).toMatchObject({reason: 'deadline_too_close'})
    expect(await decideAuctionJob(of, context(of, {program: async () => Promise.reject(new Error('gone'))}))).toMatchObject({reason: 'unreadable_job'})
  })

  it('the script strategy gets the job, its work and the estimate as JSON and answers a fee or a decline', async () => {
    const of = job()
    const seen = join(dir, 'seen.json')
    const fee = script('fee.sh', `cat > ${seen}; echo '{"fee": "0.75"}'`)
    const settings = config({strategy: 'script', script: {command: fee}})
    expect(await decideAuctionJob(of, context(of, {config: settings, script: {command: fee, timeoutMs: 5000}}))).toMatchObject({kind: 'commit', fee: '0.75', why: 'script'})
    const input = JSON.parse(readFileSync(seen, 'utf8')) as {job: {job_id: string}; work: {units: number; unit: string}; estimate_seconds: number}
    expect(input).toMatchObject({job: {job_id: of.job_id}, work: {units: 9000, unit: 'shot × qubit × layer'}, estimate_seconds: 2})
    const no = script('no.sh', `cat >/dev/null; echo '{"decline": "busy"}'`)
    expect(await decideAuctionJob(of, context(of, {config: settings, script: {command: no, timeoutMs: 5000}}))).toMatchObject({reason: 'script_declined', detail: expect.stringContaining('busy')})
    const garbage = script('garbage.sh', `cat >/dev/null; echo '{"price": 1}'`)
    expect(await decideAuctionJob(of, context(of, {config: settings, script: {command: garbage, timeoutMs: 5000}}))).toMatchObject({reason: 'script_failed'})
    // The floor of the kind applies to the script's fee too.
    const low = script('low.sh', `cat >/dev/null; echo '{"fee": "0.01"}'`)
    expect(await decideAuctionJob(of, context(of, {config: settings, script: {command: low, timeoutMs: 5000}}))).toMatchObject({kind: 'commit', fee: '0.2'})
  })
})

describe('the auction journal', () => {
  const prepared = (jobId: string) => ({
    event: 'commit_prepared' as const,
    job_id: jobId,
    kind: 'quantum_circuit',
    fee: '1.5',
    salt: 'ab'.repeat(32),
    commitment: 'cd'.repeat(32),
    bid_closes_at: NOW,
    reveal_closes_at: NOW + 1,
    deadline: NOW + 2,
    estimate_seconds: 1,
  })

  it('keeps a prepared commitment across a reopen (fee and salt), skips a torn last line, forgets closed jobs, and is 0600', () => {
    const path = join(dir, 'journal', 'auction-journal.jsonl')
    const journal = new AuctionJournal(path)
    journal.append(prepared('job-1'))
    journal.append(prepared('job-2'))
    journal.append({event: 'committed', job_id: 'job-2'})
    journal.append({event: 'revealed', job_id: 'job-2'})
    journal.append({event: 'closed', job_id: 'job-2', outcome: 'lost'})
    journal.append(prepared('job-3'))
    journal.append({event: 'committed', job_id: 'job-3'})
    journal.append({event: 'revealed', job_id: 'job-3'})
    journal.append({event: 'won', job_id: 'job-3', clearing_fee: '2'})
    appendFileSync(path, '{"event": "revealed", "job_')
    const reopened = new AuctionJournal(path)
    expect(reopened.open().map((record) => [record.jobId, record.stage, record.acknowledged])).toEqual([
      ['job-1', 'prepared', false],
      ['job-3', 'won', true],
    ])
    expect(reopened.get('job-1')).toMatchObject({fee: '1.5', salt: 'ab'.repeat(32)})
    expect(reopened.get('job-3')?.clearingFee).toBe('2')
    expect(reopened.get('job-2')).toBeUndefined()
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(new AuctionJournal(path).open()).toHaveLength(2)
  })
})
