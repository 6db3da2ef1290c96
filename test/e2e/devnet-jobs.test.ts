import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {parseJson, runCli} from '../support/cli.js'
import {waitFor} from '../support/marketplace.js'
import {send, type Provider} from '../support/harness.js'
import {envelope, jobProvider, proveMultiplier, stopSnarkjs, submit, type JobAnswer, type LeaseAnswer} from '../marketplace/job-fixtures.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/** `outpost devnet job ...` (the built CLI) against `outpost devnet start --trap-ratio 1` in a child process. */

let dataDir: string
let devnet: Devnet
let provider: Provider

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'outpost-devnet-jobs-e2e-'))
  // Ratio 1: every renter job brings one trap of its kind.
  devnet = await startDevnet({dataDir: join(dataDir, 'devnet'), process: {args: ['--trap-ratio', '1']}})
  provider = await jobProvider(devnet)
})
afterAll(async () => {
  devnet.child.kill('SIGTERM')
  await devnet.exited
  await stopSnarkjs()
  rmSync(dataDir, {recursive: true, force: true})
})

const renter = (args: string[]) => runCli(['devnet', 'job', ...args, '--endpoint', devnet.endpoint, '--data-dir', join(dataDir, 'devnet'), '--json'])

async function openJobs(): Promise<JobAnswer[]> {
  return (await send<{jobs: JobAnswer[]}>(devnet, 'GET', `/providers/${provider.pk}/jobs/open`, {key: provider.agent})).body.jobs
}

describe('outpost devnet job (built CLI)', () => {
  it('a newcomer opens the zk example with one command; an agent proves it; the renter sees it verified and paid', async () => {
    const created = await renter(['create', '--example', 'multiplier', '--reward', '1.5', '--collateral', '2'])
    expect(created.exitCode, created.stderr).toBe(0)
    const job = parseJson<JobAnswer & {requester_pubkey: string}>(created)
    expect(job).toMatchObject({kind: 'zk_proof', status: 'open', reward: {mode: 'fixed', amount: '1.5'}, collateral: '2', attempts_left: 3})

    // The devnet mixes in a trap of the same shape: the provider sees two zk_proof jobs it can't tell apart.
    let jobs: JobAnswer[] = []
    expect(await waitFor(async () => (jobs = (await openJobs()).filter((item) => item.kind === 'zk_proof')).length === 2, 30_000, 100)).toBe(true)
    expect(jobs.map((item) => item.program.digest)).toEqual([job.program.digest, job.program.digest])

    const proof = await proveMultiplier()
    for (const item of jobs) {
      const leased = await send<LeaseAnswer>(devnet, 'POST', `/providers/${provider.pk}/jobs/${item.job_id}/lease`, {key: provider.agent, body: {}})
      expect(leased.status).toBe(201)
      const verdict = await submit(devnet, provider, leased.body.lease_id, envelope(leased.body, Buffer.from(JSON.stringify(proof)), provider.agent))
      expect(verdict.body).toEqual({verdict: 'accepted', reward: '1.5'})
    }
    const sla = await send<{accepted: number; traps: {passed: number; failed: number}}>(devnet, 'GET', `/providers/${provider.pk}/sla`)
    expect(sla.body).toMatchObject({accepted: 2, traps: {passed: 1, failed: 0}})

    const outputFile = join(dataDir, 'proof.json')
    const shown = await renter(['show', job.job_id, '--output', outputFile])
    expect(shown.exitCode, shown.stderr).toBe(0)
    expect(parseJson(shown)).toMatchObject({status: 'completed', verdict: {verdict: 'accepted', reward: '1.5'}, result: {job_id: job.job_id}, output_file: outputFile})
    expect(JSON.parse(readFileSync(outputFile, 'utf8'))).toEqual(proof)
    const human = await runCli(['devnet', 'job', 'show', job.job_id, '--endpoint', devnet.endpoint, '--data-dir', join(dataDir, 'devnet')])
    expect(human.stdout).toContain('accepted, 1.5 paid')
  })

  it('opens the GHZ example as a sealed-bid auction, and cancels an open container job', async () => {
    const auction = parseJson<JobAnswer>(await renter(['create', '--example', 'ghz', '--shots', '256', '--auction', '--max-fee', '2', '--bid-seconds', '20', '--reveal-seconds', '10']))
    expect(auction).toMatchObject({kind: 'quantum_circuit', status: 'open', reward: {mode: 'auction', max_fee: '2'}})
    expect((auction.reveal_closes_at ?? 0) - (auction.bid_closes_at ?? 0)).toBe(10_000)

    const command = JSON.stringify(['sh', '-c', 'wc -c < /input > /output'])
    const container = parseJson<JobAnswer>(await renter(['create', '--kind', 'container', '--image', 'busybox', '--command', command, '--deadline', '5m']))
    expect(container).toMatchObject({kind: 'container', status: 'open', input: {size_bytes: 0}})
    expect(parseJson(await renter(['cancel', container.job_id]))).toMatchObject({status: 'cancelled'})
    const again = await renter(['cancel', container.job_id])
    expect(again.exitCode).toBe(1)
    expect(parseJson(again)).toMatchObject({error: {code: 'invalid_transition'}})
  })

  it('says what is missing, with the flag that gives it', async () => {
    const noKind = await renter(['create'])
    expect(noKind.exitCode).toBe(2)
    expect(parseJson(noKind)).toMatchObject({error: {code: 'usage', suggestion: expect.stringContaining('--example')}})
    const noFee = await renter(['create', '--example', 'ghz', '--auction'])
    expect(noFee.exitCode).toBe(2)
    expect(parseJson(noFee)).toMatchObject({error: {suggestion: expect.stringContaining('--max-fee')}})
    const noImage = await renter(['create', '--kind', 'container'])
    expect(noImage.exitCode).toBe(2)
    const badReward = await renter(['create', '--example', 'ghz', '--reward', 'lots'])
    expect(badReward.exitCode).toBe(2)
    expect(parseJson(badReward)).toMatchObject({error: {code: 'usage', message: expect.stringContaining('--reward')}})
    const missing = await renter(['show', '0'.repeat(32)])
    expect(missing.exitCode).toBe(1)
    expect(parseJson(missing)).toMatchObject({error: {code: 'not_found'}})
    const badRatio = await runCli(['devnet', 'start', '--trap-ratio', '2', '--port', '0', '--data-dir', join(dataDir, 'unused')])
    expect(badRatio.exitCode).toBe(2)
    expect(badRatio.stderr).toContain('ratio')
  })
})
