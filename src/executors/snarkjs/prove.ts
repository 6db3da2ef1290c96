import {spawn} from 'node:child_process'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {z} from 'zod'

import {ExecutorAbortedError, ExecutorError} from '../executor.js'

/**
 * The prover runs in a child process, not a worker thread: snarkjs's thread pool (the `web-worker` package) can only
 * start its threads from a process's main thread, and a child can be killed at once at the deadline, its threads with
 * it. The child reads the circuit's files from the run's directory and writes result.json there (not to stdout: a
 * circuit's `log()` calls print there). Inputs are made BigInts as snarkjs's fullProve does, and the witness and
 * the proof are separate steps so that a failure says which one failed.
 */
const CHILD_SOURCE = `
import {readFile, writeFile} from 'node:fs/promises'
const [snarkjsUrl, dir] = process.argv.slice(1)
const started = performance.now()
const result = {}
let phase = 'load'
const bigInts = (value) =>
  typeof value === 'string' && /^(-?[0-9]+|0x[0-9a-fA-F]+)$/.test(value) ? BigInt(value)
  : Array.isArray(value) ? value.map(bigInts)
  : value !== null && typeof value === 'object' ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, bigInts(v)]))
  : value
const read = (name) => readFile(dir + '/' + name)
try {
  const snarkjs = await import(snarkjsUrl)
  await snarkjs.curves.getCurveFromName('bn128')
  result.startup_ms = performance.now() - started
  phase = 'witness'
  let at = performance.now()
  const witness = {type: 'mem'}
  await snarkjs.wtns.calculate(bigInts(JSON.parse(await read('input.json'))), new Uint8Array(await read('circuit.wasm')), witness)
  result.witness_ms = performance.now() - at
  phase = 'prove'
  at = performance.now()
  const {proof, publicSignals} = await snarkjs.groth16.prove(new Uint8Array(await read('circuit.zkey')), witness)
  result.prove_ms = performance.now() - at
  phase = 'verify'
  at = performance.now()
  const verified = await snarkjs.groth16.verify(JSON.parse(await read('verification_key.json')), publicSignals, proof)
  result.verify_ms = performance.now() - at
  Object.assign(result, {ok: true, proof, publicSignals, verified})
} catch (error) {
  Object.assign(result, {ok: false, phase, message: String(error && error.message ? error.message : error)})
}
await writeFile(dir + '/result.json', JSON.stringify(result))
await globalThis.curve_bn128?.terminate()
process.exit(0)
`

const ProveResult = z.discriminatedUnion('ok', [
  z.object({
    ok: z.literal(true),
    proof: z.looseObject({pi_a: z.array(z.string()), pi_b: z.array(z.array(z.string())), pi_c: z.array(z.string()), protocol: z.literal('groth16')}),
    publicSignals: z.array(z.string()),
    verified: z.boolean(),
    startup_ms: z.number(),
    witness_ms: z.number(),
    prove_ms: z.number(),
    verify_ms: z.number(),
  }),
  z.object({ok: z.literal(false), phase: z.enum(['load', 'witness', 'prove', 'verify']), message: z.string()}),
])
export type ProveSuccess = Extract<z.infer<typeof ProveResult>, {ok: true}>

export interface ProveFiles {
  wasm: Buffer
  zkey: Buffer
  input: Buffer
  verificationKey: Record<string, unknown>
}

const OUTPUT_TAIL = 4000

/** Proves in a child process in `dir`; a failure is an ExecutorError saying whether the job or this host is at fault. */
export async function proveInChild(files: ProveFiles, dir: string, signal: AbortSignal): Promise<ProveSuccess> {
  await Promise.all([
    writeFile(join(dir, 'circuit.wasm'), files.wasm),
    writeFile(join(dir, 'circuit.zkey'), files.zkey),
    writeFile(join(dir, 'input.json'), files.input),
    writeFile(join(dir, 'verification_key.json'), JSON.stringify(files.verificationKey)),
  ])
  if (signal.aborted) throw new ExecutorAbortedError('proving', {cause: signal.reason})
  // An empty environment: the prover needs none, and NODE_OPTIONS from the agent's (a loader, a debugger) must not apply.
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD_SOURCE, import.meta.resolve('snarkjs'), dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {},
  })
  let output = ''
  const keep = (chunk: Buffer) => (output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL))
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  const kill = () => child.kill('SIGKILL')
  signal.addEventListener('abort', kill, {once: true})
  try {
    const exit = await new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', (code, killedBy) => resolve({code, signal: killedBy}))
    })
    if (signal.aborted) throw new ExecutorAbortedError('proving', {cause: signal.reason})
    if (exit.code !== 0) {
      const why = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`
      throw new ExecutorError('executor_failed', `the prover ${why}`, {retryable: true, detail: output.trim()})
    }
    return judge(await readResult(dir, output))
  } catch (error) {
    if (error instanceof ExecutorError) throw error
    throw new ExecutorError('executor_failed', `the prover could not run: ${error instanceof Error ? error.message : String(error)}`, {retryable: true, cause: error})
  } finally {
    signal.removeEventListener('abort', kill)
  }
}

async function readResult(dir: string, output: string): Promise<z.infer<typeof ProveResult>> {
  let text: string
  try {
    text = await readFile(join(dir, 'result.json'), 'utf8')
  } catch (error) {
    throw new ExecutorError('executor_failed', 'the prover exited without a result', {retryable: true, detail: output.trim(), cause: error})
  }
  const parsed = ProveResult.safeParse(JSON.parse(text))
  if (!parsed.success) throw new ExecutorError('executor_failed', `the prover's result is not readable: ${parsed.error.issues[0]?.message ?? 'invalid'}`, {retryable: true})
  return parsed.data
}

/**
 * A failure of the witness (an input the circuit rejects) or of a proving key that doesn't fit the circuit is the
 * job's: no provider can do better. A proof that this host made and that doesn't verify is this host's fault.
 */
function judge(result: z.infer<typeof ProveResult>): ProveSuccess {
  if (result.ok) {
    if (!result.verified) throw new ExecutorError('not_verified', 'the proof made here does not verify with the program\'s verification key', {retryable: true})
    return result
  }
  switch (result.phase) {
    case 'witness':
      throw new ExecutorError('bad_input', `the circuit rejects the input: ${result.message}`, {retryable: false})
    case 'prove':
    case 'verify':
      throw new ExecutorError('bad_program', `the proving key does not fit the circuit: ${result.message}`, {retryable: false})
    case 'load':
      throw new ExecutorError('executor_failed', `snarkjs could not start: ${result.message}`, {retryable: true})
  }
}
