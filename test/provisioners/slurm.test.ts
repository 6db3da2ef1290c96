import {execFileSync} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, describe, expect, it} from 'vitest'

import type {Contract} from '../../src/core/api/schemas.js'
import {runDoctor} from '../../src/setup/doctor.js'
import {elapsedSeconds, gresGpus} from '../../src/provisioners/slurm/commands.js'
import {DEFAULT_TEMPLATE, jobUserProblem, renderTemplate, SlurmProvisioner} from '../../src/provisioners/slurm/slurm-provisioner.js'
import {testJobUser, testSlurm} from '../support/slurm.js'
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

  it("never lets renters' jobs run as root or as the agent's own user, and needs root to submit as another", () => {
    const jobs = {name: 'outpost-jobs', uid: 998, gid: 998, home: '/home/outpost-jobs'}
    expect(jobUserProblem(jobs, 0)).toBeUndefined()
    expect(jobUserProblem({...jobs, name: 'root', uid: 0}, 0)).toMatch(/root is root/)
    expect(jobUserProblem({...jobs, name: 'outpost', uid: 999}, 999)).toMatch(/the agent's own user \(uid 999\): a renter's job could read the agent key/)
    expect(jobUserProblem(jobs, 999)).toMatch(/the agent runs as uid 999.*only for root \(sbatch --uid\)/)
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
  const jobUser = testJobUser()
  const stateDir = mkdtempSync(join(tmpdir(), 'outpost-slurm-state-'))
  afterAll(() => rmSync(stateDir, {recursive: true, force: true}))
  const signal = () => new AbortController().signal
  const provisioner = (overrides: Record<string, unknown> = {}) =>
    new SlurmProvisioner(settingsFrom('slurm', {slurm_conf: slurmConf, start_timeout_seconds: 20, run_as: jobUser.name, ...overrides}, {stateDir}))
  /** Small jobs, so that the suite's instances run side by side on the test node. */
  const made: string[] = []
  const smallContract = (overrides: Partial<Contract> = {}) => {
    const contract = contractFixture({cpu_cores: 1, memory_mb: 256, ...overrides})
    made.push(contract.contract_id)
    return contract
  }
  // The jobs' output goes to the job user's home, which outlives this run: remove what this run's jobs wrote there.
  afterAll(() => {
    for (const file of readdirSync(jobUser.home)) if (made.some((id) => file.startsWith(`outpost-${id}-`))) rmSync(join(jobUser.home, file), {force: true})
  })

  const slurmCommand = (program: string, args: string[]) => execFileSync(program, args, {encoding: 'utf8', env: {...process.env, SLURM_CONF: slurmConf}})
  const liveOutpostJobs = () =>
    slurmCommand('squeue', [`--user=${jobUser.name}`, '--noheader', '--format=%j|%T'])
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
      expect(job).toContain(`UserId=${jobUser.name}(${jobUser.uid})`)
      expect(job).toMatch(/NumCPUs=2 /)
      expect(job).toMatch(/MinMemoryNode=512M /)
      expect(job).toMatch(/TimeLimit=1-00:00:00 /)
      expect(job).toMatch(/Partition=debug /)
      expect(instance).toMatchObject({ipAddress: expect.stringMatching(/^[0-9.]+$/), sshPort: 22, details: {nodes: [node]}})
      const output = join(jobUser.home, `outpost-${contract.contract_id}-${instance.externalId}.out`)
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

    it("never cancels a job that is not the contract's, even one named as its instance or with its name", async () => {
      const contract = smallContract()
      const foreign = slurmCommand('sbatch', ['--parsable', '--job-name=someone-else', '--mem=64', '--output=/dev/null', '--wrap=sleep 60']).trim()
      // The contract's name, but not the job user's: someone else's job.
      const sameName = slurmCommand('sbatch', ['--parsable', `--job-name=outpost-${contract.contract_id}`, '--mem=64', '--output=/dev/null', '--wrap=sleep 60']).trim()
      await provisioner().terminate({contractId: contract.contract_id, externalId: foreign})
      await provisioner().terminate({contractId: contract.contract_id, externalId: sameName})
      const states = slurmCommand('squeue', ['--noheader', '--states=all', `--jobs=${foreign},${sameName}`, '--format=%T']).trim().split('\n')
      expect(states).toHaveLength(2)
      for (const state of states) expect(state).toMatch(/^(PENDING|RUNNING)$/)
      slurmCommand('scancel', [foreign, sameName])
    })

    it('runs the job as run_as, which cannot read a file only the agent may (its key)', async () => {
      const agentKey = join(stateDir, 'agent.key')
      writeFileSync(agentKey, 'secret\n', {mode: 0o600})
      const template = join(stateDir, 'whoami-job.sh')
      writeFileSync(
        template,
        ['#!/bin/sh', '#SBATCH --job-name={{job_name}}', '#SBATCH --mem={{memory_mb}}M', '#SBATCH --output={{output}}', `echo "user $(id -un) home $HOME"`, `cat ${agentKey} || echo "key unreadable"`, 'exec sleep infinity', ''].join('\n'),
      )
      const contract = smallContract()
      const made = provisioner({template})
      const instance = await made.provision(contract, signal())
      const output = join(jobUser.home, `outpost-${contract.contract_id}-${instance.externalId}.out`)
      for (let waited = 0; waited < 50 && !(existsSync(output) && readFileSync(output, 'utf8').includes('key unreadable')); waited++) await sleep(100)
      const printed = readFileSync(output, 'utf8')
      expect(printed).toContain(`user ${jobUser.name} home ${jobUser.home}`)
      expect(printed).toContain('Permission denied')
      expect(printed).not.toContain('secret')
      await made.terminate(instance)
    })

    it('refuses run_as root or a user that does not exist, in doctor and before submitting anything', async () => {
      const before = liveOutpostJobs()
      const asRoot = await failure(provisioner({run_as: 'root'}).provision(smallContract(), signal()))
      expect(asRoot.message).toMatch(/run_as: root is root/)
      expect(asRoot.retryPossible).toBe(false)
      expect(liveOutpostJobs()).toBe(before)
      expect((await provisioner({run_as: 'root'}).verifySetup()).find((check) => check.name === 'slurm job user')).toMatchObject({ok: false, remedy: expect.stringContaining('sbatch --uid')})
      const missing = (await provisioner({run_as: 'outpost-nobody-here'}).verifySetup()).find((check) => check.name === 'slurm job user')
      expect(missing).toMatchObject({ok: false, message: expect.stringContaining('no Unix user outpost-nobody-here')})
    })

    it("makes doctor fail on jobs as the agent's user (root here) and on a config without run_as", async () => {
      const config = (slurmSection: string) => {
        const path = join(stateDir, `outpost-${made.length}-${Math.random().toString(36).slice(2)}.toml`)
        writeFileSync(
          path,
          `[marketplace]\nendpoint = "http://127.0.0.1:9"\n\n[provider]\nname = "Doctor Test"\ncontact_email = "ops@doctor.example"\n\n[provisioner]\ntype = "slurm"\n\n${slurmSection}`,
          {mode: 0o600},
        )
        return path
      }
      const asAgent = await runDoctor({configFile: config(`[provisioner.slurm]\nrun_as = "root"\nslurm_conf = "${slurmConf}"\n`)})
      expect(asAgent.ok).toBe(false)
      expect(asAgent.checks.find((check) => check.name === 'provisioner')).toMatchObject({
        status: 'fail',
        message: expect.stringContaining('slurm job user: [provisioner.slurm] run_as: root is root'),
        remedy: expect.stringContaining('unprivileged user'),
      })
      const unset = await runDoctor({configFile: config(`[provisioner.slurm]\nslurm_conf = "${slurmConf}"\n`)})
      expect(unset.checks.find((check) => check.name === 'config')).toMatchObject({status: 'fail', message: expect.stringContaining('run_as')})
      const right = await runDoctor({configFile: config(`[provisioner.slurm]\nrun_as = "${jobUser.name}"\nslurm_conf = "${slurmConf}"\n`)})
      expect(right.checks.find((check) => check.name === 'provisioner')).toMatchObject({status: 'pass', message: expect.stringContaining(`jobs run as ${jobUser.name}`)})
    })

    it('reads capacity from sinfo and checks the setup', async () => {
      expect(await provisioner().capacity()).toMatchObject({cpuCores: 8, memoryMb: 8000, gpuCount: 0})
      expect((await provisioner().verifySetup()).every((check) => check.ok)).toBe(true)
      const wrong = await provisioner({partition: 'gpu-a100'}).verifySetup()
      expect(wrong.find((check) => check.name === 'slurm partition')).toMatchObject({ok: false})
    })
  })
}
