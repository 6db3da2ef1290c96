import * as Args from '@oclif/core/args'

import {BaseCommand} from '../../../cli/base-command.js'
import {cancelContract, type RenterContract} from '../../../core/api/renter.js'
import {devnetTarget, renterFlags} from '../../../devnet/flags.js'
import {onDevnet, renterClient} from '../../../devnet/renter.js'

export default class DevnetContractCancel extends BaseCommand {
  static override summary = 'Cancel a contract as its renter'
  static override args = {id: Args.string({description: 'contract id', required: true})}
  static override flags = renterFlags

  async run(): Promise<RenterContract> {
    const {args, flags} = await this.parse(DevnetContractCancel)
    const target = devnetTarget(flags, this.configDirectory)
    const client = await renterClient(target)
    const contract = await onDevnet(target, () => cancelContract(client, args.id))
    this.log(`contract ${contract.contract_id}: ${contract.status}; the provider's agent will terminate the machine`)
    return contract
  }
}
