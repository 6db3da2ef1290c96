import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFile, marketplaceFlags} from '../../cli/flags.js'
import {listReports, type BenchmarkReport} from '../../core/api/benchmarks.js'
import {configuredClient} from '../../core/api/factory.js'
import {configuredProvider} from '../../core/api/session.js'
import {reportSummaryRow, REPORT_SUMMARY_HEADER} from '../../bench/show.js'
import {renderTable} from '../../ui/table.js'

export default class BenchmarkShow extends BaseCommand {
  static override summary = 'List the benchmark reports the marketplace holds for this provider'
  static override examples = ['<%= config.bin %> benchmark show', '<%= config.bin %> benchmark show --json']

  static override flags = {
    ...marketplaceFlags,
    'main-key-file': mainKeyFile(),
    'provider-pubkey': Flags.string({description: 'provider public key (default: [marketplace] provider_pubkey)'}),
  }

  async run(): Promise<{provider_pubkey: string; reports: BenchmarkReport[]}> {
    const {flags} = await this.parse(BenchmarkShow)
    const loaded = this.loadConfig(flags.config)
    const providerPubkey = flags['provider-pubkey'] ?? configuredProvider(loaded, flags['main-key-file']?.publicKey)
    const reports = await listReports(configuredClient(loaded, 'interactive'), providerPubkey)
    if (reports.length === 0) this.log('no benchmark reports yet: run `outpost benchmark run --submit`')
    else this.log(renderTable(REPORT_SUMMARY_HEADER, reports.map(reportSummaryRow)))
    return {provider_pubkey: providerPubkey, reports}
  }
}
