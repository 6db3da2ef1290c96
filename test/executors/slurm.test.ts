import {chmodSync, mkdirSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {execFileSync} from 'node:child_process'
import {setTimeout as sleep} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'

import {ExecutorAbortedError} from '../../src/executors/executor.js'
import {SlurmExecutor} from '../../src/executors/slurm/slurm-executor.js'
import {SpeedBook} from '../../src/executors/speed-book.js'
import {testSlurm} from '../support/slurm.js'
import {failure, jobFor, never, tempDir} from './helpers.js'

const RUNNER = fileURLToPath(new URL('../fixtures/jobs/runner.mjs', import.meta.url))
const slurm = await testSlurm()

if (!slurm.available) {
  describe('slurm executor', () => {
    it.skip(`skipped: no SLURM cluster can run here: ${slurm.reason}`, () => {})
  })
} else {
  const workDir = tempDir('outpost-slurm-jobs-')
  chmodSync(workDir, 0o755)
  mkdirSync(join(workDir, 'jobs'))
  const executor = new SlurmExecutor(
    {command: RUNNER, work_dir: join(workDir, 'jobs'), slurm_conf: slurm.slurmConf, poll_interval_seconds: 1, command_timeout_seconds: 30},
    new SpeedBook(),
  )
  const run = (input: string, signal: AbortSignal = never) => {
    const program = Buffer.from('any program')
    return executor.run({job: jobFor('container', program, Buffer.from(input)), program, input: Buffer.from(input), workDir: tempDir(), signal})
  }
  const running = () => execFileSync('squeue', ['--noheader', '--states=PENDING,RUNNING,COMPLETING', '--format=%j'], {encoding: 'utf8', env: {...process.env, SLURM_CONF: slurm.slurmConf}})

  describe('slurm executor', () => {
    it('runs the job runner as a batch job and returns its output file', async () => {
      expect((await run('batch input')).output.toString('utf8')).toBe('BATCH INPUT')
    })

    it('reports the runner\'s failures as the script executor does', async () => {
      const error = await failure(run('fail'), 'executor_failed', true)
      expect(error.detail).toContain('/dev/sdz1')
      await failure(run('refuse'), 'executor_failed', false)
    })

    it('cancels the batch job when the signal fires', async () => {
      const controller = new AbortController()
      const job = run('sleep', controller.signal)
      while (!running().includes('outpost-job-')) await sleep(200)
      controller.abort(new Error('deadline'))
      await expect(job).rejects.toBeInstanceOf(ExecutorAbortedError)
      // scancel has been sent; the job leaves the queue once slurmd has killed it.
      for (let waited = 0; waited < 100 && running().includes('outpost-job-'); waited++) await sleep(200)
      expect(running()).not.toContain('outpost-job-')
    })
  })
}
