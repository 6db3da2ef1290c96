import {Args, Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {DISPUTE_TYPES, openDispute, type Dispute} from '../../../core/api/renter.js'
import {renterFlags} from '../../../marketplace/devnet-flags.js'
import {defaultDevnetDataDir} from '../../../marketplace/devnet.js'
import {renterClient} from '../../../marketplace/renter.js'
import {BaseCommand} from '../../../ui/base-command.js'

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
    const dataDir = resolve(flags['data-dir'] ?? defaultDevnetDataDir(this.configDirectory))
    const dispute = await openDispute(await renterClient(dataDir, flags.endpoint), args.contract, {type: flags.type, description: flags.description})
    this.log(`dispute ${dispute.dispute_id} on contract ${dispute.contract_id}: ${dispute.status}`)
    return dispute
  }
}
