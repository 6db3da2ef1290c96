import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../../cli/base-command.js'
import type {RenterContract} from '../../../core/api/renter.js'
import {devnetDataDir, renterFlags} from '../../../devnet/flags.js'
import {showContract} from '../../../devnet/renter.js'

export default class DevnetContractShow extends BaseCommand {
  static override summary = 'Show a contract as its renter sees it'
  static override args = {id: Args.string({description: 'contract id', required: true})}
  static override flags = {
    ...renterFlags,
    decrypt: Flags.boolean({description: 'open the sealed credentials with the renter key'}),
  }

  async run(): Promise<RenterContract & {credentials?: unknown}> {
    const {args, flags} = await this.parse(DevnetContractShow)
    const dataDir = devnetDataDir(flags['data-dir'], this.configDirectory)
    const contract = await showContract(dataDir, flags.endpoint, args.id, flags.decrypt)
    this.log(`contract ${contract.contract_id}: ${contract.status}${contract.termination_pending ? ' (termination pending)' : ''}`)
    this.log(`  ${contract.product_type}: ${contract.cpu_cores} cpu, ${contract.memory_mb} MB, ${contract.storage_gb} GB`)
    if (contract.instance) this.log(`  machine ${contract.instance.external_id} at ${contract.instance.ip_address} port ${contract.instance.ssh_port}`)
    if (contract.credentials !== undefined) this.log(`  credentials: ${JSON.stringify(contract.credentials)}`)
    else if (flags.decrypt) this.log('  no sealed credentials yet')
    return contract
  }
}
