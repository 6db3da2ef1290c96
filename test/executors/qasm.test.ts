import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'
import {afterAll, describe, expect, it} from 'vitest'

import {ExecutorAbortedError} from '../../src/executors/executor.js'
import {analyzeCircuit} from '../../src/executors/qasm/qasm.js'
import {denseCircuit, QasmSimulatorExecutor} from '../../src/executors/qasm/qasm-simulator-executor.js'
import {countsAsBitstrings, sampleIndices, seededRandom} from '../../src/executors/qasm/sampling.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import {failure, jobFor, never, tempDir} from './helpers.js'

const LIMITS = {maxWidth: 16, maxGates: 100_000}
const SETTINGS = {max_width: 16, max_shots: 1_000_000, max_gates: 100_000, heap_mb: 1024}
const HEADER = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'

describe('OpenQASM statement reader', () => {
  it('reads registers in declaration order, broadcasts register arguments, and counts gates and depth', () => {
    const shape = analyzeCircuit(`${HEADER}qreg a[2];\nqreg b[3];\ncreg c[5];\nh a;\ncx a[1], b[0]; // a comment\nbarrier a, b;\nu3(pi/2, (1+2)*pi, 0) b[2];\nmeasure b[2] -> c[4];\n`, LIMITS)
    // The barrier lines every qubit up at depth 2, so the u3 on b[2] is at depth 3.
    expect(shape).toMatchObject({qubits: 5, clbits: 5, gates: 4, depth: 3})
    expect([...shape.measurements]).toEqual([[4, 4]])
    expect(shape.unitary).not.toContain('measure')
    expect(shape.unitary).toContain('u3(pi/2, (1+2)*pi, 0) b[2];')
  })

  it('keeps gate definitions whole', () => {
    const shape = analyzeCircuit(`${HEADER}gate bell x, y { h x; cx x, y; }\nqreg q[2];\nbell q[0], q[1];\n`, LIMITS)
    expect(shape.unitary).toContain('gate bell x, y { h x; cx x, y; }')
    expect(shape.gates).toBe(1)
  })

  it('refuses what no provider could run as final, and what only this simulator lacks as retryable', () => {
    const refused = (source: string) => {
      try {
        analyzeCircuit(source, LIMITS)
      } catch (error) {
        return error
      }
      throw new Error('accepted')
    }
    expect(refused('qreg q[2];\nh q[0];')).toMatchObject({code: 'bad_program', retryable: false})
    expect(refused(`${HEADER}qreg q[2];\nh q[2];\n`)).toMatchObject({code: 'bad_program', retryable: false})
    expect(refused(`${HEADER}qreg q[2];\ncreg c[3];\nmeasure q -> c;\n`)).toMatchObject({code: 'bad_program', retryable: false})
    expect(refused(`${HEADER}qreg q[2];\nh q[0]\n`)).toMatchObject({code: 'bad_program', retryable: false})
    expect(refused(`${HEADER}qreg q[2];\ncx q[0];\n`)).toMatchObject({code: 'bad_program', retryable: false})
    expect(refused(`${HEADER}qreg q[2];\nu3(0.1) q[0];\n`)).toMatchObject({code: 'bad_program', retryable: false})
    expect(refused(`${HEADER}qreg q[1];\ncreg c[100000000];\n`)).toMatchObject({code: 'unsupported', retryable: true})
    expect(refused(`${HEADER}qreg q[17];\n`)).toMatchObject({code: 'unsupported', retryable: true, message: expect.stringContaining('up to 16')})
    expect(refused(`${HEADER}qreg q[2];\ncreg c[2];\nh q[0];\nmeasure q[0] -> c[0];\ncx q[0], q[1];\n`)).toMatchObject({code: 'unsupported', retryable: true})
    expect(refused(`${HEADER}qreg q[1];\nreset q[0];\n`)).toMatchObject({code: 'unsupported', retryable: true})
    expect(refused(`${HEADER}qreg q[1];\ncreg c[1];\nif (c==1) x q[0];\n`)).toMatchObject({code: 'unsupported', retryable: true})
  })
})

describe('seeded sampling', () => {
  const half = Float64Array.from([0.5, 0, 0, 0.5])

  it('gives the same counts for the same seed and others for another seed', () => {
    const draw = (seed: number) => [...sampleIndices(half, 1000, seededRandom(seed))].sort()
    expect(draw(7)).toEqual(draw(7))
    expect(draw(7)).not.toEqual(draw(8))
    expect(draw(2 ** 40 + 3)).not.toEqual(draw(3))
  })

  it('never draws a state of probability zero, and draws uniformly', () => {
    const random = seededRandom(1)
    const buckets = new Array<number>(10).fill(0)
    let outside = 0
    for (let draw = 0; draw < 100_000; draw++) {
      const value = random()
      if (value < 0 || value >= 1) outside++
      else buckets[Math.floor(value * 10)]!++
    }
    expect(outside).toBe(0)
    // Each decile holds 10,000 ± 5σ (σ = 95).
    for (const bucket of buckets) expect(Math.abs(bucket - 10_000)).toBeLessThan(475)
    expect([...sampleIndices(half, 10_000, seededRandom(3)).keys()].sort()).toEqual([0, 3])
  })

  it('writes classical bits c[m-1]…c[0] when the circuit measures, all qubits q[n-1]…q[0] when it does not', () => {
    const indices = new Map([[0b0101, 3]])
    expect(countsAsBitstrings(indices, {qubits: 4, clbits: 2, measurements: new Map([[0, 2], [1, 1]])})).toEqual({'01': 3})
    expect(countsAsBitstrings(indices, {qubits: 4, clbits: 3, measurements: new Map([[0, 0]])})).toEqual({'001': 3})
    expect(countsAsBitstrings(indices, {qubits: 6, clbits: 0, measurements: new Map()})).toEqual({'000101': 3})
  })
})

describe('qasm-simulator executor', () => {
  const executor = new QasmSimulatorExecutor(SETTINGS, new SpeedBook())
  afterAll(() => executor.close())

  async function run(qasm: string, shots: number, seed = 11) {
    const program = Buffer.from(qasm)
    const input = Buffer.from(JSON.stringify({shots, seed}))
    const outcome = await executor.run({job: jobFor('quantum_circuit', program, input), program, input, workDir: tempDir(), signal: never})
    return JSON.parse(outcome.output.toString('utf8')) as {counts: Record<string, number>}
  }

  /** Within 5 standard deviations of shots × p: a bound an honest simulator misses about once in 1.7 million. */
  function expectBinomial(count: number | undefined, shots: number, p: number) {
    expect(Math.abs((count ?? 0) - shots * p)).toBeLessThan(5 * Math.sqrt(shots * p * (1 - p)))
  }

  it('passes the GHZ trap: only 0…0 and 1…1, each about half', async () => {
    const shots = 4000
    const {counts} = await run(readFileSync(fileURLToPath(new URL('../../templates/jobs/ghz/ghz.qasm', import.meta.url)), 'utf8'), shots)
    expect(Object.keys(counts).sort()).toEqual(['00000', '11111'])
    expect((counts['00000'] ?? 0) + (counts['11111'] ?? 0)).toBe(shots)
    expectBinomial(counts['00000'], shots, 0.5)
  })

  it('passes the basis-state trap: X gates give one bitstring, with the circuit width even when top qubits are idle', async () => {
    expect(await run(`${HEADER}qreg q[6];\ncreg c[6];\nx q[0];\nx q[3];\nmeasure q -> c;\n`, 500)).toEqual({counts: {'001001': 500}})
    expect(await run(`${HEADER}qreg q[3];\ncreg c[3];\nmeasure q -> c;\n`, 10)).toEqual({counts: {'000': 10}})
  })

  it('passes a Bell pair across registers, and maps measurements into the classical register as written', async () => {
    const {counts} = await run(`${HEADER}qreg a[1];\nqreg b[1];\ncreg c[2];\nh a[0];\ncx a[0], b[0];\nmeasure a[0] -> c[0];\nmeasure b[0] -> c[1];\n`, 2000)
    expect(Object.keys(counts).sort()).toEqual(['00', '11'])
    expectBinomial(counts['11'], 2000, 0.5)
    expect(await run(`${HEADER}qreg q[3];\ncreg c[2];\nx q[2];\nmeasure q[2] -> c[0];\nmeasure q[0] -> c[1];\n`, 5)).toEqual({counts: {'01': 5}})
  })

  it('follows the distribution of a rotation: ry(2π/3) gives 1 with probability 3/4', async () => {
    const {counts} = await run(`${HEADER}qreg q[1];\ncreg c[1];\nry(2*pi/3) q[0];\nmeasure q -> c;\n`, 4000)
    expectBinomial(counts['1'], 4000, 0.75)
  })

  it('reproduces counts from the seed', async () => {
    const circuit = `${HEADER}qreg q[3];\nh q;\n`
    expect(await run(circuit, 300, 5)).toEqual(await run(circuit, 300, 5))
    expect(await run(circuit, 300, 5)).not.toEqual(await run(circuit, 300, 6))
  })

  it('refuses a bad input as final and too many shots as retryable', async () => {
    const program = Buffer.from(`${HEADER}qreg q[1];\n`)
    const attempt = (input: string) => executor.run({job: jobFor('quantum_circuit', program, Buffer.from(input)), program, input: Buffer.from(input), workDir: tempDir(), signal: never})
    await failure(attempt('{"shots": 0, "seed": 1}'), 'bad_input', false)
    await failure(attempt('{"shots": 10}'), 'bad_input', false)
    await failure(attempt('{"shots": 2000000, "seed": 1}'), 'too_large', true)
    await failure(executor.run({job: jobFor('quantum_circuit', Buffer.from(`${HEADER}qreg q[1];\nnosuchgate q[0];\n`), Buffer.from('{}')), program: Buffer.from(`${HEADER}qreg q[1];\nnosuchgate q[0];\n`), input: Buffer.from('{"shots": 1, "seed": 1}'), workDir: tempDir(), signal: never}), 'bad_program', false)
  })

  it('stops a simulation when the signal fires, and runs the next job after it', async () => {
    const program = Buffer.from(denseCircuit(15, 30))
    const input = Buffer.from('{"shots": 10, "seed": 1}')
    const controller = new AbortController()
    const running = executor.run({job: jobFor('quantum_circuit', program, input), program, input, workDir: tempDir(), signal: controller.signal})
    setTimeout(() => controller.abort(new Error('deadline')), 300)
    await expect(running).rejects.toBeInstanceOf(ExecutorAbortedError)
    expect(await run(`${HEADER}qreg q[2];\nx q[1];\n`, 3)).toEqual({counts: {'10': 3}})
  })

  it('estimates nothing before it has measured, then from the machine model, then from the program\'s own runs', async () => {
    const book = new SpeedBook()
    const fresh = new QasmSimulatorExecutor(SETTINGS, book)
    try {
      const program = Buffer.from(denseCircuit(8, 10))
      const input = Buffer.from('{"shots": 100, "seed": 1}')
      const job = jobFor('quantum_circuit', program, input)
      expect(await fresh.estimate({job, program, input})).toBeUndefined()
      await fresh.calibrate(never)
      expect((await fresh.estimate({job, program, input}))?.basis).toMatch(/^size model: width 8, \d+ gates/)
      await fresh.run({job, program, input, workDir: tempDir(), signal: never})
      expect((await fresh.estimate({job, program, input}))?.basis).toBe('measured: 1 run of this program here')
    } finally {
      await fresh.close()
    }
  })
})
