import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {parseJson, runCli} from '../support/cli.js'

/** `jobs run-local` and `test-provision --jobs` (the built CLI): the configured executors, no marketplace at all. */

let configDir: string
let env: Record<string, string>

beforeAll(() => {
  configDir = mkdtempSync(join(tmpdir(), 'outpost-run-local-e2e-'))
  // Nothing listens on the endpoint: these commands must not need the marketplace.
  writeFileSync(
    join(configDir, 'outpost.toml'),
    ['[marketplace]', 'endpoint = "http://127.0.0.1:9"', '[provisioner]', 'type = "local"', '[jobs]', 'enabled = true', 'kinds = ["zk_proof", "quantum_circuit"]', ''].join('\n'),
  )
  mkdirSync(join(configDir, 'state'), {mode: 0o700})
  env = {OUTPOST_CONFIG_DIR: configDir}
})
afterAll(() => rmSync(configDir, {recursive: true, force: true}))

interface KindJson {
  kind: string
  status: string
  result: {executor: string; estimate: {basis: string} | null; output: {digest: string}; check: string}
}

describe('outpost jobs run-local / test-provision --jobs (built CLI)', () => {
  it('test-provision --jobs runs the multiplier proof and the GHZ circuit through snarkjs and the simulator', async () => {
    const tested = await runCli(['test-provision', '--jobs', '--json'], {env})
    expect(tested.exitCode, tested.stderr).toBe(0)
    const result = parseJson<{ok: boolean; enabled: boolean; kinds: KindJson[]}>(tested)
    expect(result).toMatchObject({ok: true, enabled: true})
    expect(result.kinds.map((test) => [test.kind, test.status, test.result.executor])).toEqual([
      ['zk_proof', 'passed', 'snarkjs'],
      ['quantum_circuit', 'passed', 'qasm-simulator'],
    ])
    expect(result.kinds[0]?.result.check).toMatch(/^a Groth16 proof with public signals \[\d+, 3\]$/)
    // The GHZ example's seed is fixed, and the simulator is seeded: the same counts on every machine.
    expect(result.kinds[1]?.result.check).toBe('1000 shots over 2 outcome(s): 11111×525, 00000×475')
  })

  it('run-local shows digests, executor, time against the estimate (the runs above taught it), and the output', async () => {
    const ran = await runCli(['jobs', 'run-local', '--example', 'ghz'], {env})
    expect(ran.exitCode, ran.stderr).toBe(0)
    expect(ran.stdout).toMatch(/^program\s+f7baec9141cabf07007707743a2dc7130b98e051a35b067bfbdc6343ae474f96 \(223 bytes\)$/m)
    expect(ran.stdout).toMatch(/^executor\s+qasm-simulator$/m)
    expect(ran.stdout).toMatch(/^time\s+\d+\.\d\d s, estimate \d+\.\d\d s \(× [\d.]+\)$/m)
    expect(ran.stdout).toMatch(/^output\s+adde20da7e2146a56fe8c8b34f6eb1a8140227dc329b9c528d2d6ecd070b16e6 \(36 bytes\)$/m)
    expect(ran.stdout).toMatch(/^check\s+1000 shots/m)
  })

  it('says what is wrong, with the remedy', async () => {
    const nothing = await runCli(['jobs', 'run-local', '--json'], {env})
    expect(nothing.exitCode).toBe(2)
    expect(parseJson(nothing)).toMatchObject({error: {code: 'usage', suggestion: expect.stringContaining('--example')}})
    const missing = await runCli(['jobs', 'run-local', join(configDir, 'none.qasm'), join(configDir, 'none.json'), '--json'], {env})
    expect(missing.exitCode).toBe(2)
    expect(parseJson(missing)).toMatchObject({error: {code: 'file_missing'}})
    const circuit = join(configDir, 'circuit.qasm')
    writeFileSync(circuit, 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\ncreg c[1];\nh q[0];\nmeasure q -> c;\n')
    const badInput = join(configDir, 'bad-input.json')
    writeFileSync(badInput, '{"shots": "many"}')
    const refused = await runCli(['jobs', 'run-local', circuit, badInput, '--json'], {env})
    expect(refused.exitCode).toBe(1)
    expect(parseJson(refused)).toMatchObject({error: {code: 'executor_bad_input', suggestion: expect.stringContaining('input')}})
    const late = await runCli(['jobs', 'run-local', '--example', 'multiplier', '--timeout', '50ms', '--json'], {env})
    expect(late.exitCode).toBe(1)
    expect(parseJson(late)).toMatchObject({error: {code: 'executor_aborted', suggestion: expect.stringContaining('--timeout')}})
  })
})
