import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, expect, it} from 'vitest'

import {JobsSection} from '../../src/core/config/jobs.js'
import {createExecutors, speedBookFile} from '../../src/executors/index.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import {source, tracedImports} from '../support/import-trace.js'
import {jobFor, never, tempDir} from './helpers.js'

const REPO = fileURLToPath(new URL('../..', import.meta.url))

describe('[jobs] config', () => {
  it('defaults to nothing served, and the built-in executor of each kind', () => {
    const jobs = JobsSection.parse({})
    expect(jobs).toMatchObject({enabled: false, kinds: ['zk_proof', 'quantum_circuit'], max_concurrent: 1, executor: {zk_proof: 'snarkjs', quantum_circuit: 'qasm-simulator', container: 'docker'}})
    expect(jobs.qasm_simulator.max_width).toBe(16)
  })

  it('refuses an executor that does not run the kind, and a script or slurm executor without its section', () => {
    const issues = (value: unknown) => JobsSection.safeParse(value).error?.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`)
    expect(issues({kinds: ['container'], executor: {container: 'snarkjs'}})).toEqual(['executor.container: executor "snarkjs" does not run container jobs (it runs zk_proof)'])
    expect(issues({kinds: ['zk_proof'], executor: {zk_proof: 'script'}})).toEqual(['script: [jobs.script] is required when a kind\'s executor is "script"'])
    expect(issues({kinds: ['zk_proof'], executor: {zk_proof: 'script'}, script: {command: 'runner'}})).toBeUndefined()
    expect(issues({kinds: ['teleport']})?.[0]).toMatch(/^kinds\.0: /)
    expect(issues({qasm_simulator: {max_width: 40}})?.[0]).toMatch(/^qasm_simulator\.max_width: /)
  })
})

describe('executor registry', () => {
  it('gives each served kind its executor, one instance per type, and resolves paths against the config file', async () => {
    const configDir = tempDir()
    const jobs = JobsSection.parse({kinds: ['zk_proof', 'container'], executor: {zk_proof: 'script', container: 'script'}, script: {command: '../fixtures/jobs/runner.mjs'}})
    const executors = createExecutors(jobs, {configPath: join(REPO, 'test/executors/outpost.toml'), stateDir: configDir})
    expect([...executors.keys()]).toEqual(['zk_proof', 'container'])
    expect(executors.get('zk_proof')).toBe(executors.get('container'))
    const executor = executors.get('container')
    expect(executor?.type).toBe('script')
    const input = Buffer.from('through the registry')
    const outcome = await executor?.run({job: jobFor('container', input, input), program: input, input, workDir: tempDir(), signal: never})
    expect(outcome?.output.toString('utf8')).toBe('THROUGH THE REGISTRY')
    // The run was measured into the state directory's speed book.
    expect(JSON.parse(readFileSync(speedBookFile(configDir), 'utf8'))).toMatchObject({programs: {[`script:${jobFor('container', input, input).program.digest}`]: {samples: 1}}})
  })

  it('loads no executor module, snarkjs or simulator until an executor is used', async () => {
    const loaded = await tracedImports(`
      const {createExecutors} = await import(${source('src/executors/index.ts')})
      const {JobsSection} = await import(${source('src/core/config/jobs.ts')})
      const executors = createExecutors(JobsSection.parse({kinds: ['zk_proof', 'quantum_circuit', 'container']}), {configPath: '/etc/outpost/outpost.toml', stateDir: '/nonexistent'})
      if (executors.size !== 3) throw new Error('expected three executors')
    `)
    // The control: the trace sees the registry itself.
    expect(loaded).toContain('src/executors/index.ts')
    for (const lazy of ['snarkjs-executor', 'qasm-simulator-executor', 'docker-executor', 'node_modules/snarkjs', 'node_modules/quantum-circuit']) expect(loaded).not.toContain(lazy)
  })
})

describe('speed book', () => {
  it('estimates a program from its own runs, a new one from the machine model, and nothing without either', () => {
    let now = 1000
    const book = new SpeedBook(undefined, () => now++)
    const query = {type: 'snarkjs' as const, programDigest: 'aa', units: 10_000, describeUnits: '10k'}
    expect(book.estimate(query)).toBeUndefined()
    book.recordCalibration('snarkjs', {fixedMs: 400, variableMs: 600, units: 10_000})
    expect(book.estimate(query)).toEqual({seconds: 1, basis: 'size model: 10k; 400 ms fixed + 60000.0 ms per million units (1 run)'})
    expect(book.estimate({...query, units: 20_000})?.seconds).toBeCloseTo(1.6)
    book.record('snarkjs', 'aa', 2000)
    book.record('snarkjs', 'aa', 3000)
    // The newest run weighs 0.3.
    expect(book.estimate(query)).toEqual({seconds: 2.3, basis: 'measured: 2 runs of this program here'})
    expect(book.estimate({...query, type: 'script'})).toBeUndefined()
  })

  it('keeps what it measured across restarts, and starts afresh from a file it cannot read', () => {
    const file = join(tempDir(), 'speed.json')
    new SpeedBook(file).record('docker', 'bb', 1500)
    expect(new SpeedBook(file).estimate({type: 'docker', programDigest: 'bb'})?.seconds).toBe(1.5)
    writeFileSync(file, '{"version": 7}')
    expect(new SpeedBook(file).estimate({type: 'docker', programDigest: 'bb'})).toBeUndefined()
  })
})
