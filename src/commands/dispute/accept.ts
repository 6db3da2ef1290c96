import * as Args from '@oclif/core/args'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags, marketplaceFlags, yesFlag} from '../../cli/flags.js'
import {acceptDispute, type ProviderDispute} from '../../core/api/disputes.js'
import {answerableDispute} from '../../dispute/disputes.js'
import {mainKeySession} from '../../core/api/session.js'
import {confirmOrRefuse} from '../../ui/confirm.js'

export default class DisputeAccept extends BaseCommand {
  static override summary = "Accept the renter's claim (signed with the provider main key; cannot be undone)"
  static override args = {id: Args.string({description: 'dispute id', required: true})}
  static override flags = {...marketplaceFlags, ...mainKeyFlags, ...yesFlag}

  async run(): Promise<ProviderDispute> {
    const {args, flags} = await this.parse(DisputeAccept)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await this.mainKey(flags, 'accepting a dispute')
    const session = mainKeySession(loaded, mainKey)
    const dispute = await answerableDispute(session, args.id)
    this.log(`dispute ${dispute.dispute_id} on contract ${dispute.contract_id} (${dispute.type}): ${dispute.description}`)
    await confirmOrRefuse("Accept the renter's claim? This cannot be undone.", 'accepting a dispute', {yes: flags.yes, json: this.jsonEnabled()})
    const accepted = await acceptDispute(session.client, args.id)
    this.log(`dispute ${accepted.dispute_id}: ${accepted.status}`)
    return accepted
  }
}
