import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {sshPublicKey} from '../cli/flags.js'
import {testProvision, type TestProvisionResult} from '../setup/test-provision.js'
import {paint} from '../ui/colors.js'
import {whileWorking} from '../ui/spinner.js'
import {progressMode} from '../ui/tasks.js'

export default class TestProvision extends BaseCommand {
  static override summary = 'Provision a test instance with the configured provisioner, check it, and remove it'
  static override description =
    'Makes one instance as the agent would for a contract (sized like the first [[offerings]]), waits for its address, ' +
    'checks its health and terminates it, printing the time of each phase. With --keep the instance stays for you to inspect.'

  static override examples = ['<%= config.bin %> test-provision', '<%= config.bin %> test-provision --ssh-pubkey ~/.ssh/id_ed25519.pub --keep']

  static override flags = {
    'ssh-pubkey': sshPublicKey({description: 'SSH public key to install in the instance: the key, or its file (like ~/.ssh/id_ed25519.pub)'}),
    keep: Flags.boolean({description: 'leave the instance running', default: false}),
  }

  async run(): Promise<TestProvisionResult> {
    const {flags} = await this.parse(TestProvision)
    const loaded = this.loadConfig(flags.config)
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
}
