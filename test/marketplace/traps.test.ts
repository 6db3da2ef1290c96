import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {sha256Hex} from '../../src/core/signing.js'
import {ExecutorJob} from '../../src/executors/executor.js'
import {QasmSimulatorExecutor} from '../../src/executors/qasm/qasm-simulator-executor.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import {ghzWithinBound, qasmShape, quantumCounts, quantumTrapPasses} from '../../src/marketplace/job-kinds.js'
import {basisCircuit, ghzCircuit, TrapMaker} from '../../src/marketplace/traps.js'
import {ZkWorker} from '../../src/marketplace/zk-worker.js'

/** The pieces of §12 traps and shape checks, on their own. */

const qasm = new QasmSimulatorExecutor({max_width: 16, max_shots: 1_000_000, max_gates: 100_000, heap_mb: 1024}, new SpeedBook())
const workDir = mkdtempSync(join(tmpdir(), 'outpost-traps-'))
afterAll(async () => {
  await qasm.close()
  rmSync(workDir, {recursive: true, force: true})
})

async function simulate(circuit: string, shots: number, seed: number): Promise<Buffer> {
  const program = Buffer.from(circuit)
  const input = Buffer.from(JSON.stringify({shots, seed}))
  const job = ExecutorJob.parse({
    job_id: 'trap',
    kind: 'quantum_circuit',
    program: {digest: sha256Hex(program), size_bytes: program.length},
    input: {digest: sha256Hex(input), size_bytes: input.length},
    resources: {cpu_cores: 1, memory_mb: 256, gpu_count: 0},
    deadline: Date.now() + 60_000,
  })
  return (await qasm.run({job, program, input, workDir: mkdtempSync(join(workDir, 'run-')), signal: new AbortController().signal})).output
}

describe('quantum shapes and the GHZ bound', () => {
  it('reads register widths from OpenQASM 2.0, comments aside, and refuses what isn\'t', () => {
    expect(qasmShape('// note\nOPENQASM 2.0;\nqreg a[2];\nqreg b[3]; // qreg z[9];\ncreg c[4];\n')).toEqual({qubits: 5, clbits: 4})
    expect(qasmShape('OPENQASM 3.0;\nqubit[2] q;')).toBeUndefined()
    expect(qasmShape('OPENQASM 2.0;\ncreg c[2];')).toBeUndefined()
    expect(qasmShape(`OPENQASM 2.0;\nqreg q[65];`)).toBeUndefined()
  })

  it('takes counts of the qubit or the classical-bit width that sum to the shots', () => {
    const shape = {qubits: 3, clbits: 2}
    const counts = (value: unknown) => quantumCounts(Buffer.from(JSON.stringify(value)), shape, 10)
    expect(counts({counts: {'000': 4, '111': 6}})).toBeDefined()
    expect(counts({counts: {'00': 4, '11': 6}})).toBeDefined()
    for (const bad of [{counts: {'000': 4, '11': 6}}, {counts: {'0000': 10}}, {counts: {'000': 9}}, {counts: {'0x0': 10}}, {counts: {}}, {counts: {'000': 10.5}}, []]) {
      expect(counts(bad), JSON.stringify(bad)).toBeUndefined()
    }
  })

  it('the GHZ bound is five standard deviations: |count − shots/2| ≤ 5·sqrt(shots/4)', () => {
    // shots 1000: sqrt(250) = 15.81, times 5 = 79.06.
    expect(ghzWithinBound(579, 1000)).toBe(true)
    expect(ghzWithinBound(421, 1000)).toBe(true)
    expect(ghzWithinBound(580, 1000)).toBe(false)
    expect(ghzWithinBound(420, 1000)).toBe(false)
  })
})

describe('trap circuits through the agent\'s own simulator', () => {
  it('GHZ of every width up to 8 passes, in many seeds; a basis state passes exactly', async () => {
    for (let width = 1; width <= 8; width++) {
      const output = await simulate(ghzCircuit(width), 2000, width * 7)
      const counts = quantumCounts(output, {qubits: width, clbits: width}, 2000)
      expect(counts, `width ${width}`).toBeDefined()
      expect(quantumTrapPasses(counts!, {kind: 'quantum_circuit', distribution: 'ghz', width}, 2000), `width ${width}`).toBe(true)
    }
    const bits = [true, false, false, true, true, false, false, true]
    const counts = quantumCounts(await simulate(basisCircuit(bits), 500, 1), {qubits: 8, clbits: 8}, 500)
    expect(quantumTrapPasses(counts!, {kind: 'quantum_circuit', distribution: 'basis', bitstring: '10011001'}, 500)).toBe(true)
    expect(quantumTrapPasses(counts!, {kind: 'quantum_circuit', distribution: 'basis', bitstring: '10011000'}, 500)).toBe(false)
  })

  it('a lopsided or mixed GHZ answer fails', () => {
    const ghz = {kind: 'quantum_circuit' as const, distribution: 'ghz' as const, width: 3}
    expect(quantumTrapPasses(new Map([['000', 700], ['111', 300]]), ghz, 1000)).toBe(false)
    expect(quantumTrapPasses(new Map([['000', 500], ['111', 499], ['101', 1]]), ghz, 1000)).toBe(false)
    expect(quantumTrapPasses(new Map([['000', 510], ['111', 490]]), ghz, 1000)).toBe(true)
  })
})

describe('trap schedule and answers', () => {
  it('a ratio of 0.1 makes exactly one trap per ten renter jobs of each kind; 0 makes none', () => {
    const maker = new TrapMaker(0.1, new ZkWorker())
    const due = Array.from({length: 50}, () => maker.due('zk_proof')).filter(Boolean).length
    expect(due).toBe(5)
    expect(Array.from({length: 30}, () => maker.due('container')).filter(Boolean).length).toBe(3)
    const none = new TrapMaker(0, new ZkWorker())
    expect(Array.from({length: 30}, () => none.due('zk_proof')).some(Boolean)).toBe(false)
  })
})
