import {Args} from '@oclif/core'
import {resolve} from 'node:path'

import {cancelContract, type RenterContract} from '../../../core/api/renter.js'
import {renterFlags} from '../../../marketplace/devnet-flags.js'
import {defaultDevnetDataDir} from '../../../marketplace/devnet.js'
import {renterClient} from '../../../marketplace/renter.js'
import {BaseCommand} from '../../../ui/base-command.js'

export default class DevnetContractCancel extends BaseCommand {
  static override summary = 'Cancel a contract as its renter'
  static override args = {id: Args.string({description: 'contract id', required: true})}
  static override flags = renterFlags

  async run(): Promise<RenterContract> {
    const {args, flags} = await this.parse(DevnetContractCancel)
    const dataDir = resolve(flags['data-dir'] ?? defaultDevnetDataDir(this.configDirectory))
    const contract = await cancelContract(await renterClient(dataDir, flags.endpoint), args.id)
    this.log(`contract ${contract.contract_id}: ${contract.status}; the provider's agent will terminate the machine`)
    return contract
  }
}
