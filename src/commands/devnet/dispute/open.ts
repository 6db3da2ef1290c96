import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../../cli/base-command.js'
import {DISPUTE_TYPES, openDispute, type Dispute} from '../../../core/api/renter.js'
import {devnetTarget, renterFlags} from '../../../devnet/flags.js'
import {onDevnet, renterClient} from '../../../devnet/renter.js'

export default class DevnetDisputeOpen extends BaseCommand {
  static override summary = 'Open a dispute on a contract as its renter'
  static override args = {contract: Args.string({description: 'contract id', required: true})}
  static override flags = {
    ...renterFlags,
    type: Flags.option({description: 'what went wrong', options: DISPUTE_TYPES, required: true})(),
    description: Flags.string({description: 'the renter\'s account of it', required: true}),
  }

  async run(): Promise<Dispute> {
    const {args, flags} = await this.parse(DevnetDisputeOpen)
    const target = devnetTarget(flags, this.configDirectory)
    const client = await renterClient(target)
    const dispute = await onDevnet(target, () => openDispute(client, args.contract, {type: flags.type, description: flags.description}))
    this.log(`dispute ${dispute.dispute_id} on contract ${dispute.contract_id}: ${dispute.status}`)
    return dispute
  }
}
