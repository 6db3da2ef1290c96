import {Flags} from '@oclif/core'

import {listReports, type BenchmarkReport} from '../../core/api/benchmarks.js'
import {fromHex} from '../../core/hex.js'
import {readKeyFileContent} from '../../core/keys.js'
import {reportSummaryRow, REPORT_SUMMARY_HEADER} from '../../bench/show.js'
import {renderTable} from '../../ui/table.js'
import {mainKeyFlags} from '../../stake/flags.js'
import {apiClient, configuredProvider} from '../../stake/main-key.js'
import {BaseCommand} from '../../ui/base-command.js'

export default class BenchmarkShow extends BaseCommand {
  static override summary = 'List the benchmark reports the marketplace holds for this provider'
  static override examples = ['<%= config.bin %> benchmark show', '<%= config.bin %> benchmark show --json']

  static override flags = {
    'main-key-file': mainKeyFlags['main-key-file'],
    'provider-pubkey': Flags.string({description: 'provider public key (default: [marketplace] provider_pubkey)'}),
  }

  async run(): Promise<{provider_pubkey: string; reports: BenchmarkReport[]}> {
    const {flags} = await this.parse(BenchmarkShow)
    const loaded = this.loadConfig(flags.config)
    const mainKeyPublic = flags['main-key-file'] ? fromHex(readKeyFileContent(flags['main-key-file']).public_key, 32, 'public_key') : undefined
    const providerPubkey = flags['provider-pubkey'] ?? configuredProvider(loaded, mainKeyPublic)
    const reports = await listReports(apiClient(loaded), providerPubkey)
    if (reports.length === 0) this.log('no benchmark reports yet: run `outpost benchmark run --submit`')
    else this.log(renderTable(REPORT_SUMMARY_HEADER, reports.map(reportSummaryRow)))
    return {provider_pubkey: providerPubkey, reports}
  }
}
