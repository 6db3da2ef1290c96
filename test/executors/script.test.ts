import {existsSync, readFileSync, truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'
import * as snarkjs from 'snarkjs'
import {afterAll, describe, expect, it} from 'vitest'

import {ExecutorAbortedError, MAX_OUTPUT_BYTES} from '../../src/executors/executor.js'
import {readOutputFile} from '../../src/executors/output.js'
import {multiplierExample} from '../../src/executors/snarkjs/program.js'
import {ScriptExecutor} from '../../src/executors/script/script-executor.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import {failure, jobFor, never, tempDir} from './helpers.js'

const RUNNER = fileURLToPath(new URL('../fixtures/jobs/runner.mjs', import.meta.url))
const WRONG_ANSWER_RUNNER = fileURLToPath(new URL('../fixtures/jobs/wrong-answer-runner.mjs', import.meta.url))
const template = (path: string) => readFileSync(fileURLToPath(new URL(`../../templates/jobs/${path}`, import.meta.url)))

afterAll(async () => {
  await (globalThis as {curve_bn128?: {terminate(): Promise<void>}}).curve_bn128?.terminate()
})

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('script executor', () => {
  const executor = new ScriptExecutor({command: RUNNER, killGraceMs: 500}, new SpeedBook())
  const run = (input: string, options: {signal?: AbortSignal; workDir?: string; program?: string} = {}) => {
    const program = Buffer.from(options.program ?? '{"image": "any", "command": ["true"]}')
    return executor.run({job: jobFor('container', program, Buffer.from(input)), program, input: Buffer.from(input), workDir: options.workDir ?? tempDir(), signal: options.signal ?? never})
  }

  it('runs `<command> run` with the job and file paths on stdin and returns the output file', async () => {
    expect((await run('hello job')).output.toString('utf8')).toBe('HELLO JOB')
    const described = JSON.parse((await run('describe', {program: 'the program bytes'})).output.toString('utf8')) as Record<string, unknown>
    expect(described).toMatchObject({keys: ['input_path', 'job', 'output_path', 'program_path'], program: 'the program bytes', outpost_env: []})
    expect(described.job_id).toMatch(/^job-/)
  })

  it('keeps the agent\'s OUTPOST_ variables from the script', async () => {
    process.env.OUTPOST_TEST_SECRET = 'do-not-pass'
    try {
      expect(JSON.parse((await run('describe')).output.toString('utf8'))).toMatchObject({outpost_env: []})
    } finally {
      delete process.env.OUTPOST_TEST_SECRET
    }
  })

  it('takes a failure as this host\'s (retryable) and keeps stderr for the local log only', async () => {
    const error = await failure(run('fail'), 'executor_failed', true)
    expect(error.message).toBe('the job runner exited with code 3')
    expect(error.detail).toContain('/dev/sdz1 on host-17')
  })

  it('takes the script\'s word when it says the job itself is at fault', async () => {
    const error = await failure(run('refuse'), 'executor_failed', false)
    expect(error.message).toBe('the job runner refused the job: the input names no file')
  })

  it('fails a run that leaves no output, and refuses outputs over 16 MiB', async () => {
    await failure(run('no-output'), 'output_invalid', true)
    const big = join(tempDir(), 'big')
    writeFileSync(big, '')
    truncateSync(big, MAX_OUTPUT_BYTES + 1)
    await failure(readOutputFile(big, 'test'), 'output_too_large', false)
  })

  it('stops the script and the processes it started when the signal fires', async () => {
    const workDir = tempDir()
    const controller = new AbortController()
    const running = run('sleep', {signal: controller.signal, workDir})
    const pidFile = join(workDir, 'grandchild.pid')
    while (!existsSync(pidFile) || readFileSync(pidFile, 'utf8') === '') await sleep(50)
    const grandchild = Number(readFileSync(pidFile, 'utf8'))
    expect(isAlive(grandchild)).toBe(true)
    controller.abort(new Error('deadline'))
    await expect(running).rejects.toBeInstanceOf(ExecutorAbortedError)
    // The group got SIGTERM, then SIGKILL after the grace; give the kernel a moment to reap.
    for (let waited = 0; waited < 50 && isAlive(grandchild); waited++) await sleep(100)
    expect(isAlive(grandchild)).toBe(false)
  })

  it('fails as retryable when the command is missing', async () => {
    const missing = new ScriptExecutor({command: '/nonexistent/runner', killGraceMs: 100}, new SpeedBook())
    const program = Buffer.from('x')
    await failure(missing.run({job: jobFor('container', program, program), program, input: program, workDir: tempDir(), signal: never}), 'executor_failed', true)
    expect((await missing.verifySetup())[0]).toMatchObject({ok: false})
    expect((await executor.verifySetup())[0]).toMatchObject({ok: true})
  })
})

describe('the wrong-answer runner (for the trap tests of the job market)', () => {
  const executor = new ScriptExecutor({command: WRONG_ANSWER_RUNNER, killGraceMs: 500}, new SpeedBook())

  it('answers a GHZ circuit with well-formed counts that a GHZ trap rejects', async () => {
    const program = template('ghz/ghz.qasm')
    const input = template('ghz/input.json')
    const outcome = await executor.run({job: jobFor('quantum_circuit', program, input), program, input, workDir: tempDir(), signal: never})
    expect(JSON.parse(outcome.output.toString('utf8'))).toEqual({counts: {'00000': 1000}})
  })

  it('answers the zk example with a proof that verifies but proves other public signals', async () => {
    const {program, input} = multiplierExample()
    const outcome = await executor.run({job: jobFor('zk_proof', program, input), program, input, workDir: tempDir(), signal: never})
    const output = JSON.parse(outcome.output.toString('utf8')) as {proof: Parameters<typeof snarkjs.groth16.verify>[2]; public_signals: string[]}
    const verificationKey = JSON.parse(template('multiplier/verification_key.json').toString('utf8')) as Record<string, unknown>
    expect(await snarkjs.groth16.verify(verificationKey, output.public_signals, output.proof)).toBe(true)
    expect(output.public_signals[1]).toBe('4')
  })
})
