import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import {execa} from 'execa'
import * as snarkjs from 'snarkjs'
import {afterAll, describe, expect, it} from 'vitest'

import {ExecutorAbortedError} from '../../src/executors/executor.js'
import {decodeProgram, multiplierExample, readZkeyHeader} from '../../src/executors/snarkjs/program.js'
import {SnarkjsExecutor} from '../../src/executors/snarkjs/snarkjs-executor.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import {failure, jobFor, never, tempDir} from './helpers.js'

const example = multiplierExample()
const verificationKey = JSON.parse(readFileSync(fileURLToPath(new URL('../../templates/jobs/multiplier/verification_key.json', import.meta.url)), 'utf8')) as Record<string, unknown>

afterAll(async () => {
  // The independent verifier below starts snarkjs's thread pool in this process.
  await (globalThis as {curve_bn128?: {terminate(): Promise<void>}}).curve_bn128?.terminate()
})

describe('snarkjs-groth16-v1 programs', () => {
  it('reads the proving work from the zkey header', () => {
    expect(decodeProgram(example.program).header).toEqual({nVars: 1004, nPublic: 2, domainSize: 1024})
  })

  it('refuses a program that is not one, as final', () => {
    const program = JSON.parse(example.program.toString('utf8')) as Record<string, unknown>
    const bad = (changes: Record<string, unknown>) => () => decodeProgram(Buffer.from(JSON.stringify({...program, ...changes})))
    expect(() => decodeProgram(Buffer.from('not json'))).toThrow(expect.objectContaining({code: 'bad_program', retryable: false}))
    expect(bad({format: 'snarkjs-plonk-v1'})).toThrow(expect.objectContaining({code: 'bad_program', message: expect.stringContaining('format')}))
    expect(bad({wasm_b64: Buffer.from('not wasm').toString('base64')})).toThrow(expect.objectContaining({code: 'bad_program', message: expect.stringContaining('WebAssembly')}))
    const zkey = Buffer.from(program.zkey_b64 as string, 'base64')
    expect(bad({zkey_b64: zkey.subarray(0, 2000).toString('base64')})).toThrow(expect.objectContaining({code: 'bad_program', message: expect.stringContaining('past the end')}))
    expect(() => readZkeyHeader(Buffer.from('zkey\x01\x00\x00\x00\x00\x00\x00\x00', 'latin1'))).toThrow(expect.objectContaining({code: 'bad_program'}))
  })
})

describe('snarkjs executor', () => {
  const executor = new SnarkjsExecutor(new SpeedBook())
  const job = jobFor('zk_proof', example.program, example.input)

  it('proves the multiplier example; the proof verifies on its own and names the public signals', async () => {
    const outcome = await executor.run({job, program: example.program, input: example.input, workDir: tempDir(), signal: never})
    const output = JSON.parse(outcome.output.toString('utf8')) as {proof: Parameters<typeof snarkjs.groth16.verify>[2]; public_signals: string[]}
    expect(Object.keys(output).sort()).toEqual(['proof', 'public_signals'])
    expect(output.proof.protocol).toBe('groth16')
    // Outputs come first, then public inputs: [out, a].
    expect(output.public_signals).toHaveLength(2)
    expect(output.public_signals[1]).toBe('3')
    expect(await snarkjs.groth16.verify(verificationKey, output.public_signals, output.proof)).toBe(true)
    expect(await snarkjs.groth16.verify(verificationKey, [output.public_signals[0] ?? '', '4'], output.proof)).toBe(false)
    expect(outcome.measured).toMatchObject({n_vars: 1004, domain_size: 1024})
    expect(outcome.executorMs).toBeGreaterThan(0)
  })

  it('fails an input the circuit rejects as final', async () => {
    const input = Buffer.from('{"a": "3"}')
    const error = await failure(executor.run({job: jobFor('zk_proof', example.program, input), program: example.program, input, workDir: tempDir(), signal: never}), 'bad_input', false)
    expect(error.message).toMatch(/circuit rejects the input/)
    await failure(executor.run({job: jobFor('zk_proof', example.program, Buffer.from('[1]')), program: example.program, input: Buffer.from('[1]'), workDir: tempDir(), signal: never}), 'bad_input', false)
  })

  it('never returns a proof that does not verify: a verification key of another circuit makes it a retryable failure', async () => {
    const program = JSON.parse(example.program.toString('utf8')) as {verification_key: {vk_alpha_1: unknown; IC: unknown[]}}
    program.verification_key.vk_alpha_1 = program.verification_key.IC[0]
    const bytes = Buffer.from(JSON.stringify(program))
    await failure(executor.run({job: jobFor('zk_proof', bytes, example.input), program: bytes, input: example.input, workDir: tempDir(), signal: never}), 'not_verified', true)
  })

  it('kills the prover when the signal fires', async () => {
    const controller = new AbortController()
    const running = executor.run({job, program: example.program, input: example.input, workDir: tempDir(), signal: controller.signal})
    setTimeout(() => controller.abort(new Error('deadline')), 50)
    await expect(running).rejects.toBeInstanceOf(ExecutorAbortedError)
  })

  it('estimates the zk example from the size model until it has run, then from its own runs (accuracy: npm run bench)', async () => {
    const calibrated = new SnarkjsExecutor(new SpeedBook())
    const measuring = new SnarkjsExecutor(new SpeedBook())
    expect(await measuring.estimate({job, program: example.program})).toBeUndefined()
    await calibrated.calibrate(never)
    const modelled = await calibrated.estimate({job, program: example.program})
    expect(modelled?.basis).toMatch(/^size model: 1004 variables, domain 1024/)
    expect(modelled?.seconds).toBeGreaterThan(0)
    const measured: number[] = []
    for (let round = 0; round < 3; round++) {
      measured.push((await measuring.run({job, program: example.program, input: example.input, workDir: tempDir(), signal: never})).executorMs)
    }
    const own = await measuring.estimate({job, program: example.program})
    expect(own?.basis).toBe('measured: 3 runs of this program here')
    // The book keeps a weighted mean of the program's runs: the estimate lies within what was measured.
    expect((own?.seconds ?? 0) * 1000).toBeGreaterThanOrEqual(Math.min(...measured) - 1)
    expect((own?.seconds ?? 0) * 1000).toBeLessThanOrEqual(Math.max(...measured) + 1)
  })
})

describe('executors and the process', () => {
  it('leave nothing running that keeps a process from exiting', async () => {
    const script = fileURLToPath(new URL('../fixtures/jobs/run-and-exit.ts', import.meta.url))
    const result = await execa('node', ['--import', 'tsx', script], {timeout: 120_000, reject: false})
    expect({exitCode: result.exitCode, timedOut: result.timedOut, stdout: result.stdout}).toEqual({exitCode: 0, timedOut: false, stdout: 'proved and simulated'})
  })
})
