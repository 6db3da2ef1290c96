import {Args} from '@oclif/core'

import {acceptDispute, type ProviderDispute} from '../../core/api/disputes.js'
import {answerableDispute} from '../../dispute/disputes.js'
import {mainKeyFlags, yesFlag} from '../../stake/flags.js'
import {mainKeySession, readMainKey} from '../../stake/main-key.js'
import {BaseCommand} from '../../ui/base-command.js'
import {confirmOrRefuse} from '../../ui/confirm.js'
import {getPassphrase} from '../../ui/passphrase.js'

export default class DisputeAccept extends BaseCommand {
  static override summary = "Accept the renter's claim (signed with the provider main key; cannot be undone)"
  static override args = {id: Args.string({description: 'dispute id', required: true})}
  static override flags = {...mainKeyFlags, ...yesFlag}

  async run(): Promise<ProviderDispute> {
    const {args, flags} = await this.parse(DisputeAccept)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await readMainKey({file: flags['main-key-file'], passphrase: () => getPassphrase({file: flags['passphrase-file']})}, 'accepting a dispute')
    const session = mainKeySession(loaded, mainKey)
    const dispute = await answerableDispute(session, args.id)
    this.log(`dispute ${dispute.dispute_id} on contract ${dispute.contract_id} (${dispute.type}): ${dispute.description}`)
    await confirmOrRefuse("Accept the renter's claim? This cannot be undone.", 'accepting a dispute', {yes: flags.yes, json: this.jsonEnabled()})
    const accepted = await acceptDispute(session.client, args.id)
    this.log(`dispute ${accepted.dispute_id}: ${accepted.status}`)
    return accepted
  }
}
