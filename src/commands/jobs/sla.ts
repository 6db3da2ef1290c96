import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFile} from '../../cli/flags.js'
import {configuredClient} from '../../core/api/factory.js'
import {JobsApi} from '../../core/api/jobs.js'
import {configuredProvider} from '../../core/api/session.js'
import {slaLines, slaReport, type SlaReport} from '../../jobs/leases.js'

export default class JobsSla extends BaseCommand {
  static override summary = "Show this provider's job SLA figures (PROTOCOL §12): results on time, latency, traps"
  static override description =
    'A public read: it needs the provider public key ([marketplace] provider_pubkey, --provider-pubkey, or the main ' +
    'key file), never a secret. On time: accepted and rejected results among the leases that ended; latency: from ' +
    'lease to result.'

  static override examples = ['<%= config.bin %> jobs sla', '<%= config.bin %> jobs sla --days 7 --json']

  static override flags = {
    'main-key-file': mainKeyFile(),
    'provider-pubkey': Flags.string({description: 'provider public key (default: [marketplace] provider_pubkey)'}),
    days: Flags.integer({description: 'the period, in days back from now', default: 30, min: 1, max: 365}),
  }

  async run(): Promise<SlaReport> {
    const {flags} = await this.parse(JobsSla)
    const loaded = this.loadConfig(flags.config)
    const providerPubkey = flags['provider-pubkey'] ?? configuredProvider(loaded, flags['main-key-file']?.publicKey)
    const report = await slaReport(new JobsApi(configuredClient(loaded, 'interactive'), providerPubkey), flags.days)
    for (const line of slaLines(report)) this.log(line)
    return report
  }
}
