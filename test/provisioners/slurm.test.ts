import {execFileSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, describe, expect, it} from 'vitest'

import type {Contract} from '../../src/core/api/schemas.js'
import {elapsedSeconds, gresGpus} from '../../src/provisioners/slurm/commands.js'
import {DEFAULT_TEMPLATE, renderTemplate, SlurmProvisioner} from '../../src/provisioners/slurm/slurm-provisioner.js'
import {testSlurm} from '../helpers/slurm.js'
import {failure, settingsFrom} from '../support/provisioners.js'
import {contractFixture, provisionerContractSuite} from './contract-suite.js'

describe('SLURM job template', () => {
  it('fills placeholders and leaves out the lines of those without a value', () => {
    const template = '#SBATCH --job-name={{job_name}}\n#SBATCH --account={{account}}\n#SBATCH --gres={{gres}}\nexec sleep infinity'
    expect(renderTemplate(template, {job_name: 'outpost-1', account: undefined, gres: 'gpu:a100:2'})).toBe('#SBATCH --job-name=outpost-1\n#SBATCH --gres=gpu:a100:2\nexec sleep infinity')
  })

  it('refuses a value that would add lines, and a placeholder it does not know', () => {
    expect(() => renderTemplate('#SBATCH --job-name={{job_name}}', {job_name: 'x\n#SBATCH --uid=0'})).toThrow(/line break/)
    expect(() => renderTemplate('#SBATCH --qos={{qos}}', {})).toThrow(/does not know/)
  })

  it('ships a template that uses only known placeholders', () => {
    const keys = ['job_name', 'partition', 'account', 'nodes', 'tasks', 'cpus_per_task', 'memory_mb', 'time_limit', 'gres', 'output']
    const rendered = renderTemplate(readFileSync(DEFAULT_TEMPLATE, 'utf8'), Object.fromEntries(keys.map((key) => [key, `<${key}>`])))
    expect(rendered).toContain('#SBATCH --mem=<memory_mb>M')
  })

  it('reads squeue times and GRES counts', () => {
    expect(elapsedSeconds('0:07')).toBe(7)
    expect(elapsedSeconds('12:07')).toBe(727)
    expect(elapsedSeconds('1:02:03')).toBe(3723)
    expect(elapsedSeconds('2-01:02:03')).toBe(2 * 86_400 + 3723)
    expect(gresGpus('gpu:2,gpu:a100:4(S:0-1)')).toBe(6)
    expect(gresGpus('(null)')).toBe(0)
  })
})

const slurm = await testSlurm()

if (!slurm.available) {
  describe('slurm provisioner', () => {
    it.skip(`skipped: no SLURM cluster can run here: ${slurm.reason}`, () => {})
  })
} else {
  const {slurmConf, node} = slurm
  const stateDir = mkdtempSync(join(tmpdir(), 'outpost-slurm-state-'))
  const workDir = join(stateDir, 'slurm')
  afterAll(() => rmSync(stateDir, {recursive: true, force: true}))
  const signal = () => new AbortController().signal
  const provisioner = (overrides: Record<string, unknown> = {}) =>
    new SlurmProvisioner(settingsFrom('slurm', {slurm_conf: slurmConf, start_timeout_seconds: 20, ...overrides}, {stateDir}))
  /** Small jobs, so that the suite's instances run side by side on the test node. */
  const smallContract = (overrides: Partial<Contract> = {}) => contractFixture({cpu_cores: 1, memory_mb: 256, ...overrides})

  const slurmCommand = (program: string, args: string[]) => execFileSync(program, args, {encoding: 'utf8', env: {...process.env, SLURM_CONF: slurmConf}})
  const liveOutpostJobs = () =>
    slurmCommand('squeue', ['--me', '--noheader', '--format=%j|%T'])
      .split('\n')
      .filter((line) => line.startsWith('outpost-') && !/\|(COMPLETED|CANCELLED|FAILED|TIMEOUT)$/.test(line)).length

  provisionerContractSuite('slurm (a real single-node SLURM)', {
    create: () => provisioner(),
    makeContract: smallContract,
    failProvision: (contract) => {
      // More memory than any node has: sbatch refuses the job, and no retry changes that.
      contract.memory_mb = 100_000
      return {retryPossible: false}
    },
    countInstances: liveOutpostJobs,
  })

  describe('SLURM provisioner against a real cluster', () => {
    it('submits the contract as a job: name, CPUs, memory, time limit, partition, and the contract in its environment', async () => {
      const contract = smallContract({cpu_cores: 2, memory_mb: 512})
      const made = provisioner({partition: 'debug', time_limit: '1-00:00:00'})
      const instance = await made.provision(contract, signal())
      const job = slurmCommand('scontrol', ['show', 'job', instance.externalId, '--oneliner'])
      expect(job).toContain(`JobName=outpost-${contract.contract_id}`)
      expect(job).toMatch(/NumCPUs=2 /)
      expect(job).toMatch(/MinMemoryNode=512M /)
      expect(job).toMatch(/TimeLimit=1-00:00:00 /)
      expect(job).toMatch(/Partition=debug /)
      expect(instance).toMatchObject({ipAddress: expect.stringMatching(/^[0-9.]+$/), sshPort: 22, details: {nodes: [node]}})
      const output = join(workDir, `outpost-${contract.contract_id}-${instance.externalId}.out`)
      for (let waited = 0; waited < 50 && !(existsSync(output) && readFileSync(output, 'utf8').includes('outpost:')); waited++) await sleep(100)
      expect(readFileSync(output, 'utf8')).toContain(`outpost: contract ${contract.contract_id} on ${node}, job ${instance.externalId}`)
      expect(await made.health(instance)).toMatchObject({status: 'healthy', details: {state: 'RUNNING'}})
      await made.terminate(instance)
      expect(await made.health(instance)).toMatchObject({status: 'unhealthy', details: {state: 'CANCELLED'}})
    })

    it('fails at once, not after the start timeout, a job that asks for more CPUs than the partition has, and cancels it', async () => {
      const before = liveOutpostJobs()
      const started = Date.now()
      const error = await failure(provisioner().provision(smallContract({cpu_cores: 64}), signal()))
      expect(error.message).toMatch(/can never start: pending with reason PartitionConfig/)
      expect(error.retryPossible).toBe(false)
      expect(Date.now() - started).toBeLessThan(10_000)
      expect(liveOutpostJobs()).toBe(before)
    })

    it('reports a GPU contract on a cluster without GPUs as sbatch refuses it', async () => {
      const error = await failure(provisioner({gpu_type: 'a100'}).provision(smallContract({gpu_count: 2}), signal()))
      expect(error.message).toMatch(/Invalid generic resource/i)
      expect(error.retryPossible).toBe(false)
    })

    it('gives up on a job that stays pending past the start timeout, and cancels it', async () => {
      const holder = smallContract({cpu_cores: 8, memory_mb: 256})
      const made = provisioner({start_timeout_seconds: 1})
      const held = await provisioner().provision(holder, signal())
      const before = liveOutpostJobs()
      const error = await failure(made.provision(smallContract({cpu_cores: 1}), signal()))
      expect(error.message).toMatch(/did not finish within 1 s: it is still pending/)
      expect(error.retryPossible).toBe(true)
      expect(liveOutpostJobs()).toBe(before)
      await made.terminate(held)
    })

    it("never cancels a job that is not the contract's, even one named as its instance", async () => {
      const contract = smallContract()
      const foreign = slurmCommand('sbatch', ['--parsable', '--job-name=someone-else', '--mem=64', '--output=/dev/null', '--wrap=sleep 60']).trim()
      await provisioner().terminate({contractId: contract.contract_id, externalId: foreign})
      expect(slurmCommand('squeue', ['--noheader', '--states=all', `--jobs=${foreign}`, '--format=%T']).trim()).toMatch(/^(PENDING|RUNNING)$/)
      slurmCommand('scancel', [foreign])
    })

    it('reads capacity from sinfo and checks the setup', async () => {
      expect(await provisioner().capacity()).toMatchObject({cpuCores: 8, memoryMb: 8000, gpuCount: 0})
      expect((await provisioner().verifySetup()).every((check) => check.ok)).toBe(true)
      const wrong = await provisioner({partition: 'gpu-a100'}).verifySetup()
      expect(wrong.find((check) => check.name === 'slurm partition')).toMatchObject({ok: false})
    })
  })
}
