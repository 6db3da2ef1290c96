import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../cli/base-command.js'
import type {LoadedConfig} from '../core/config/load.js'
import {duration, sshPublicKey} from '../cli/flags.js'
import {ExitCode} from '../core/errors.js'
import {testJobs, type JobsTestResult} from '../jobs/test-jobs.js'
import {testProvision, type TestProvisionResult} from '../setup/test-provision.js'
import {paint} from '../ui/colors.js'
import {whileWorking} from '../ui/spinner.js'
import {progressMode} from '../ui/tasks.js'

export default class TestProvision extends BaseCommand {
  static override summary = 'Provision a test instance with the configured provisioner, check it, and remove it'
  static override description =
    'Makes one instance as the agent would for a contract (sized like the first [[offerings]]), waits for its address, ' +
    'checks its health and terminates it, printing the time of each phase. With --keep the instance stays for you to inspect. ' +
    'With --jobs it runs the built-in example job of each kind [jobs] serves through its executor instead (no marketplace, ' +
    'no instance), and exits 6 when one fails.'

  static override examples = ['<%= config.bin %> test-provision', '<%= config.bin %> test-provision --ssh-pubkey ~/.ssh/id_ed25519.pub --keep', '<%= config.bin %> test-provision --jobs']

  static override flags = {
    'ssh-pubkey': sshPublicKey({description: 'SSH public key to install in the instance: the key, or its file (like ~/.ssh/id_ed25519.pub)'}),
    keep: Flags.boolean({description: 'leave the instance running', default: false, exclusive: ['jobs']}),
    jobs: Flags.boolean({description: 'run one example job of each kind [jobs] serves through its executor, instead of an instance', default: false}),
    'job-timeout': duration({description: 'with --jobs: stop each job after this long', default: '10m'}),
  }

  async run(): Promise<TestProvisionResult | JobsTestResult> {
    const {flags} = await this.parse(TestProvision)
    const loaded = this.loadConfig(flags.config)
    if (flags.jobs) return this.testJobs(loaded, flags['job-timeout'])
    const sshPubkey = flags['ssh-pubkey']
    const interrupted = new AbortController()
    const interrupt = () => interrupted.abort(new Error('interrupted'))
    process.once('SIGINT', interrupt)
    try {
      const provisioning = `provisioning a test instance with ${loaded.config.provisioner.type}...`
      const work = () => testProvision({loaded, sshPubkey, keep: flags.keep, signal: interrupted.signal})
      const result = await whileWorking(provisioning, progressMode(this.jsonEnabled()), (line) => this.log(line), work)
      for (const phase of result.phases) this.log(`  ${phase.name.padEnd(10)} ${(phase.ms / 1000).toFixed(1).padStart(6)} s`)
      this.log(`  ${'total'.padEnd(10)} ${(result.total_ms / 1000).toFixed(1).padStart(6)} s`)
      const {instance} = result
      this.log(
        `${paint.green('✓', process.stdout)} ${instance.external_id} at ${instance.ip_address}:${instance.ssh_port} was ${result.health.status}` +
          (result.kept ? '; kept running (--keep)' : '; terminated'),
      )
      return result
    } finally {
      process.off('SIGINT', interrupt)
    }
  }

  private async testJobs(loaded: LoadedConfig, timeoutMs: number): Promise<JobsTestResult> {
    const interrupted = new AbortController()
    const interrupt = () => interrupted.abort(new Error('interrupted'))
    process.once('SIGINT', interrupt)
    try {
      const result = await testJobs({loaded, timeoutMs, signal: interrupted.signal}, {mode: progressMode(this.jsonEnabled()), log: (line) => this.log(line)})
      if (!result.enabled) this.warning('[jobs] enabled = false: `outpost run` leases no jobs until it is true')
      for (const test of result.kinds) {
        const mark = test.status === 'passed' ? paint.green('✓', process.stdout) : test.status === 'failed' ? paint.red('✗', process.stdout) : paint.yellow('-', process.stdout)
        const said = test.result ? `${test.result.executor} in ${(test.result.executor_ms / 1000).toFixed(2)} s, output ${test.result.output.digest.slice(0, 16)}…: ${test.result.check}` : (test.message ?? '')
        this.log(`${mark} ${test.kind}: ${said}`)
        if (test.suggestion) this.log(`    ${paint.dim('→', process.stdout)} ${test.suggestion}`)
      }
      if (!result.ok) process.exitCode = ExitCode.checksFailed
      return result
    } finally {
      process.off('SIGINT', interrupt)
    }
  }
}
