import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../../cli/base-command.js'
import type {RenterContract} from '../../../core/api/renter.js'
import {devnetTarget, renterFlags} from '../../../devnet/flags.js'
import {showContract, type ConnectHint} from '../../../devnet/renter.js'
import {printable} from '../../../core/printable.js'

export default class DevnetContractShow extends BaseCommand {
  static override summary = 'Show a contract as its renter sees it, and how to connect to its machine'
  static override args = {id: Args.string({description: 'contract id', required: true})}
  static override flags = {
    ...renterFlags,
    decrypt: Flags.boolean({description: 'open the sealed credentials with the renter key'}),
  }

  async run(): Promise<RenterContract & {credentials?: unknown; connect?: ConnectHint}> {
    const {args, flags} = await this.parse(DevnetContractShow)
    const target = devnetTarget(flags, this.configDirectory)
    const contract = await showContract(target, args.id, flags.decrypt)
    this.log(printable(`contract ${contract.contract_id}: ${contract.status}${contract.termination_pending ? ' (termination pending)' : ''}`))
    this.log(printable(`  ${contract.product_type}: ${contract.cpu_cores} cpu, ${contract.memory_mb} MB, ${contract.storage_gb} GB`))
    if (contract.instance) this.log(printable(`  machine ${contract.instance.external_id} at ${contract.instance.ip_address} port ${contract.instance.ssh_port}`))
    else if (['accepted', 'provisioning'].includes(contract.status)) this.log(printable(`  no machine yet: the provider's agent is on it; run this again in a moment`))
    if (contract.credentials !== undefined) this.log(printable(`  credentials: ${JSON.stringify(contract.credentials)}`))
    else if (flags.decrypt) this.log('  no sealed credentials yet')
    if (contract.connect) this.log(printable(`  connect: ${contract.connect.command}  (${contract.connect.note})`))
    return contract
  }
}
