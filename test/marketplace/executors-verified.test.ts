import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {generateKeyPair} from '../../src/core/signing.js'
import {templatePath} from '../../src/core/templates.js'
import {ExecutorJob, type Executor} from '../../src/executors/executor.js'
import {QasmSimulatorExecutor} from '../../src/executors/qasm/qasm-simulator-executor.js'
import {multiplierExample} from '../../src/executors/snarkjs/program.js'
import {SnarkjsExecutor} from '../../src/executors/snarkjs/snarkjs-executor.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import {waitFor} from '../support/marketplace.js'
import {send} from '../support/harness.js'
import {createJob, envelope, jobBody, jobProvider, jobsApi, lease, uploadProgram, type JobAnswer} from './job-fixtures.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

/**
 * The agent's built-in executors as honest providers against the devnet with a trap for every renter job: each
 * output they make, traps included, passes the devnet's verification (Groth16, the quantum shape, the GHZ bound and
 * the basis-state traps' bit order).
 */

let market: Devnet
let workDir: string
const qasm = new QasmSimulatorExecutor({max_width: 16, max_shots: 1_000_000, max_gates: 100_000, heap_mb: 1024}, new SpeedBook())
const snarkjs = new SnarkjsExecutor(new SpeedBook())

beforeAll(async () => {
  market = await startDevnet({trapRatio: 1})
  workDir = mkdtempSync(join(tmpdir(), 'outpost-executors-verified-'))
})
afterAll(async () => {
  await qasm.close()
  await market.stop()
  rmSync(workDir, {recursive: true, force: true})
})

async function runAll(kind: string, executor: Executor, body: Record<string, unknown>, expectedJobs: number): Promise<string[]> {
  const provider = await jobProvider(market, {capabilities: [`job:${kind}`]})
  for (let index = 0; index < expectedJobs / 2; index++) await createJob(market, generateKeyPair(), body)
  let jobs: JobAnswer[] = []
  const ready = await waitFor(async () => {
    jobs = (await send<{jobs: JobAnswer[]}>(market, 'GET', `/providers/${provider.pk}/jobs/open`, {key: provider.agent})).body.jobs
    return jobs.length === expectedJobs
  }, 60_000, 100)
  expect(ready, `${expectedJobs} ${kind} jobs, half of them traps`).toBe(true)
  const api = jobsApi(market, provider)
  const verdicts: string[] = []
  for (const job of jobs) {
    const leased = await lease(market, provider, job.job_id)
    const [program, input] = [await api.program(job.program.digest), await api.input(job.job_id)]
    const dir = mkdtempSync(join(workDir, 'run-'))
    const outcome = await executor.run({job: ExecutorJob.parse(leased.job), program, input, workDir: dir, signal: new AbortController().signal})
    const verdict = await api.submitResult(leased.lease_id, envelope(leased, outcome.output, provider.agent))
    verdicts.push(verdict.reason ?? verdict.verdict)
  }
  const sla = await api.sla()
  expect(sla.traps).toEqual({passed: expectedJobs / 2, failed: 0})
  return verdicts
}

describe('§12 the built-in executors against the devnet\'s verification', () => {
  it('qasm-simulator: the GHZ example and its traps are all accepted', async () => {
    const ghz = readFileSync(templatePath('jobs/ghz/ghz.qasm'))
    const digest = await uploadProgram(market, generateKeyPair(), ghz)
    const verdicts = await runAll('quantum_circuit', qasm, jobBody('quantum_circuit', digest, readFileSync(templatePath('jobs/ghz/input.json'))), 8)
    expect(verdicts).toEqual(Array(8).fill('accepted'))
  })

  it('snarkjs: the multiplier example and its trap are accepted', async () => {
    const example = multiplierExample()
    const digest = await uploadProgram(market, generateKeyPair(), example.program)
    const verdicts = await runAll('zk_proof', snarkjs, jobBody('zk_proof', digest, example.input), 2)
    expect(verdicts).toEqual(['accepted', 'accepted'])
  })
})
