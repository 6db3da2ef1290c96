import {execFileSync} from 'node:child_process'
import {chmodSync, mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, expect, it} from 'vitest'

import {containerName, DockerExecutor} from '../../src/executors/docker/docker-executor.js'
import {gresRequest, SlurmExecutor} from '../../src/executors/slurm/slurm-executor.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import {findNvidiaHook} from '../../src/gpu/container-runtime.js'
import {testDocker} from '../support/dockerd.js'
import {testSlurm} from '../support/slurm.js'
import {failure, jobFor, never, tempDir} from './helpers.js'

/**
 * Jobs that ask for GPUs: the docker executor gives the container the job's allocated devices by UUID (the engine here
 * has no NVIDIA runtime, so it refuses, as an engine without the toolkit does); the slurm executor asks for them as
 * gres, by type when the job names one.
 */

const [docker, slurm] = await Promise.all([testDocker(), testSlurm()])
const GPU = {id: 'GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a70', model: 'NVIDIA H100 80GB HBM3'}

describe('gres of a GPU job', () => {
  it('names the type when the job names a model that can be one, else only the count', () => {
    expect(gresRequest(2, 'a100')).toBe('gpu:a100:2')
    expect(gresRequest(1, undefined)).toBe('gpu:1')
    expect(gresRequest(1, 'NVIDIA H100 80GB HBM3')).toBe('gpu:1')
  })
})

if (docker.available && findNvidiaHook() === undefined) {
  const {socket, image} = docker
  const executor = new DockerExecutor({socket, request_timeout_seconds: 30, pids_limit: 64}, new SpeedBook())
  const gpuJob = (tag: string) => {
    const program = Buffer.from(JSON.stringify({image, command: ['echo', tag]}))
    return {program, job: jobFor('container', program, Buffer.from(''), {resources: {cpu_cores: 0.5, memory_mb: 64, gpu_count: 1}})}
  }
  const containersOf = (jobId: string) =>
    execFileSync('docker', ['-H', `unix://${socket}`, 'ps', '--all', '--quiet', '--filter', `name=${containerName(jobId)}`], {encoding: 'utf8'}).trim()

  describe('docker executor GPUs (a real engine without the NVIDIA runtime)', () => {
    it('asks for the allocated device; the refusal is retryable elsewhere, with the fix in the local detail', async () => {
      const {program, job} = gpuJob('allocated')
      const error = await failure(executor.run({job, program, input: Buffer.from(''), workDir: tempDir(), signal: never, gpus: [GPU]}), 'unsupported', true)
      expect(error.message).toBe("this host's Docker engine has no NVIDIA container runtime")
      expect(error.detail).toContain(`could not select device driver "" with capabilities: [[gpu]]`)
      expect(error.detail).toContain('nvidia-ctk runtime configure --runtime=docker')
      expect(containersOf(job.job_id)).toBe('')
    })

    it('a GPU job that comes without its devices is refused before a container is made', async () => {
      const {program, job} = gpuJob('none')
      const error = await failure(executor.run({job, program, input: Buffer.from(''), workDir: tempDir(), signal: never}), 'unsupported', true)
      expect(error.message).toBe('the job asks for 1 GPUs and was allocated 0')
    })
  })
}

if (slurm.available) {
  const workDir = tempDir('outpost-slurm-gpu-')
  chmodSync(workDir, 0o755)
  mkdirSync(join(workDir, 'jobs'))
  const runner = fileURLToPath(new URL('../fixtures/jobs/runner.mjs', import.meta.url))
  const executor = new SlurmExecutor({command: runner, work_dir: join(workDir, 'jobs'), slurm_conf: slurm.slurmConf, poll_interval_seconds: 1, command_timeout_seconds: 30}, new SpeedBook())

  describe('slurm executor GPUs (a real cluster with no GPU gres)', () => {
    it('asks sbatch for gpu:<type>:<n>, which a cluster without that gres refuses', async () => {
      const program = Buffer.from('any program')
      const job = jobFor('container', program, Buffer.from('gpu'), {resources: {cpu_cores: 1, memory_mb: 64, gpu_count: 2, gpu_model: 'h100'}})
      const error = await failure(executor.run({job, program, input: Buffer.from('gpu'), workDir: tempDir(), signal: never}), 'executor_failed', true)
      expect(error.message).toMatch(/^sbatch refused the job: /)
      expect(error.message).toMatch(/gres|generic resource/i)
    })
  })
}
