import {execFileSync} from 'node:child_process'
import {describe, expect, it} from 'vitest'

import {containerName, DockerExecutor} from '../../src/executors/docker/docker-executor.js'
import {ExecutorAbortedError, type ExecutorJob} from '../../src/executors/executor.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import {testDocker} from '../support/dockerd.js'
import {failure, jobFor, never, tempDir} from './helpers.js'

const docker = await testDocker()

if (!docker.available) {
  describe('docker executor', () => {
    it.skip(`skipped: no Docker engine can run here: ${docker.reason}`, () => {})
  })
} else {
  const {socket, image} = docker
  const executor = new DockerExecutor({socket, request_timeout_seconds: 30, pids_limit: 64}, new SpeedBook())
  const containersOf = (job: ExecutorJob) =>
    execFileSync('docker', ['-H', `unix://${socket}`, 'ps', '--all', '--quiet', '--filter', `name=${containerName(job.job_id)}`], {encoding: 'utf8'}).trim()

  const run = async (command: string[], input: string, options: {signal?: AbortSignal; image?: string; memoryMb?: number} = {}) => {
    const program = Buffer.from(JSON.stringify({image: options.image ?? image, command}))
    const job = jobFor('container', program, Buffer.from(input), {resources: {cpu_cores: 0.5, memory_mb: options.memoryMb ?? 64, gpu_count: 0}})
    try {
      return await executor.run({job, program, input: Buffer.from(input), workDir: tempDir(), signal: options.signal ?? never})
    } finally {
      expect(containersOf(job)).toBe('')
    }
  }

  describe('docker executor', () => {
    it('runs the image\'s command with the input at /input and returns /output, then removes the container', async () => {
      const outcome = await run(['sh', '-c', 'tr a-z A-Z < /input > /output'], 'hello container')
      expect(outcome.output.toString('utf8')).toBe('HELLO CONTAINER')
    })

    it('gives the container no network, a read-only input and the job\'s memory as its limit', async () => {
      const probe = 'cat /proc/net/dev > /output; (echo x > /input) 2>/dev/null && echo input-writable >> /output; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max >> /output 2>/dev/null; true'
      const report = (await run(['sh', '-c', probe], 'input', {memoryMb: 48})).output.toString('utf8')
      const interfaces = report
        .split('\n')
        .filter((line) => line.includes(':') && !line.includes('|'))
        .map((line) => line.split(':')[0]?.trim())
      expect(interfaces).toEqual(['lo'])
      expect(report).not.toContain('input-writable')
      expect(report).toContain(String(48 * 1024 * 1024))
    })

    it('fails a command that exits non-zero as the job\'s fault, with its log kept for the local log', async () => {
      const error = await failure(run(['sh', '-c', 'echo "no such dataset" >&2; exit 4'], ''), 'executor_failed', false)
      expect(error.message).toBe("the container's command exited with code 4")
      expect(error.detail).toContain('no such dataset')
    })

    it('fails an image this engine does not have as retryable: outpost never pulls', async () => {
      await failure(run(['true'], '', {image: 'outpost-test/not-here:1'}), 'unsupported', true)
    })

    it('refuses images outside the allow list as retryable, and programs that are not one as final', async () => {
      const strict = new DockerExecutor({socket, request_timeout_seconds: 30, pids_limit: 64, allowed_images: ['registry.example/prover:2']}, new SpeedBook())
      const program = Buffer.from(JSON.stringify({image, command: ['true']}))
      await failure(strict.run({job: jobFor('container', program, program), program, input: program, workDir: tempDir(), signal: never}), 'unsupported', true)
      const bad = Buffer.from(JSON.stringify({image, command: 'true'}))
      await failure(executor.run({job: jobFor('container', bad, bad), program: bad, input: bad, workDir: tempDir(), signal: never}), 'bad_program', false)
    })

    it('kills and removes the container when the signal fires', async () => {
      const controller = new AbortController()
      const running = run(['sleep', '600'], '', {signal: controller.signal})
      setTimeout(() => controller.abort(new Error('deadline')), 1500)
      await expect(running).rejects.toBeInstanceOf(ExecutorAbortedError)
    })

    it('answers the doctor', async () => {
      expect((await executor.verifySetup())[0]).toMatchObject({ok: true})
      const absent = new DockerExecutor({socket: '/nonexistent.sock', request_timeout_seconds: 2, pids_limit: 64}, new SpeedBook())
      expect((await absent.verifySetup())[0]).toMatchObject({ok: false})
    })
  })
}
