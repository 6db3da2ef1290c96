import * as Args from '@oclif/core/args'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags, marketplaceFlags} from '../../cli/flags.js'
import {getDispute, type ProviderDispute} from '../../core/api/disputes.js'
import {printable} from '../../core/printable.js'
import {renderTable} from '../../ui/table.js'
import {EVIDENCE_HEADER, evidenceRows} from '../../dispute/disputes.js'
import {mainKeySession} from '../../core/api/session.js'

export default class DisputeShow extends BaseCommand {
  static override summary = 'Show a dispute with its evidence'
  static override args = {id: Args.string({description: 'dispute id', required: true})}
  static override flags = {...marketplaceFlags, ...mainKeyFlags}

  async run(): Promise<ProviderDispute> {
    const {args, flags} = await this.parse(DisputeShow)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await this.mainKey(flags, 'reading a dispute')
    const dispute = await getDispute(mainKeySession(loaded, mainKey).client, args.id)
    this.log(`dispute   ${printable(`${dispute.dispute_id} (${dispute.status})`)}`)
    this.log(`contract  ${dispute.contract_id}`)
    this.log(`type      ${printable(dispute.type)}`)
    if (dispute.created_at !== undefined) this.log(`opened    ${new Date(dispute.created_at).toISOString()}`)
    this.log(`claim     ${printable(dispute.description, {multiline: true})}`)
    this.log(`response  ${printable(dispute.provider_response ?? '(none yet)', {multiline: true})}`)
    if (dispute.evidence.length > 0) this.log('\n' + renderTable(EVIDENCE_HEADER, evidenceRows(dispute.evidence)))
    return dispute
  }
}
