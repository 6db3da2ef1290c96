import {Args} from '@oclif/core'

import {getDispute, type ProviderDispute} from '../../core/api/disputes.js'
import {renderTable} from '../../ui/table.js'
import {EVIDENCE_HEADER, evidenceRows} from '../../dispute/disputes.js'
import {mainKeyFlags} from '../../stake/flags.js'
import {mainKeySession, readMainKey} from '../../stake/main-key.js'
import {BaseCommand} from '../../ui/base-command.js'
import {getPassphrase} from '../../ui/passphrase.js'

export default class DisputeShow extends BaseCommand {
  static override summary = 'Show a dispute with its evidence'
  static override args = {id: Args.string({description: 'dispute id', required: true})}
  static override flags = {...mainKeyFlags}

  async run(): Promise<ProviderDispute> {
    const {args, flags} = await this.parse(DisputeShow)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await readMainKey({file: flags['main-key-file'], passphrase: () => getPassphrase({file: flags['passphrase-file']})}, 'reading a dispute')
    const dispute = await getDispute(mainKeySession(loaded, mainKey).client, args.id)
    this.log(`dispute   ${dispute.dispute_id} (${dispute.status})`)
    this.log(`contract  ${dispute.contract_id}`)
    this.log(`type      ${dispute.type}`)
    if (dispute.created_at !== undefined) this.log(`opened    ${new Date(dispute.created_at).toISOString()}`)
    this.log(`claim     ${dispute.description}`)
    this.log(`response  ${dispute.provider_response ?? '(none yet)'}`)
    if (dispute.evidence.length > 0) this.log('\n' + renderTable(EVIDENCE_HEADER, evidenceRows(dispute.evidence)))
    return dispute
  }
}
