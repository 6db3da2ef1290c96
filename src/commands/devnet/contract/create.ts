import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../../cli/base-command.js'
import {sshPublicKey} from '../../../cli/flags.js'
import {createContract, type RenterContract} from '../../../core/api/renter.js'
import {devnetTarget, renterFlags} from '../../../devnet/flags.js'
import {onDevnet, renterClient} from '../../../devnet/renter.js'

export default class DevnetContractCreate extends BaseCommand {
  static override summary = 'Rent an offering as the devnet renter'
  static override description =
    'Signs with the renter key in the devnet data directory (made on first use), which also opens the sealed ' +
    'credentials. Without --endpoint it rents on the devnet `outpost devnet start` recorded.'

  static override examples = ['<%= config.bin %> devnet contract create --offering 3f2a... --ssh-pubkey ~/.ssh/id_ed25519.pub']

  static override flags = {
    ...renterFlags,
    offering: Flags.string({description: 'offering id (see `outpost devnet offerings`)', required: true}),
    'ssh-pubkey': sshPublicKey({description: 'SSH public key to install on the machine: the key, or its file (like ~/.ssh/id_ed25519.pub)', required: true}),
    'duration-hours': Flags.integer({description: 'how long to rent it', default: 1, min: 1, max: 8760}),
  }

  async run(): Promise<RenterContract> {
    const {flags} = await this.parse(DevnetContractCreate)
    const target = devnetTarget(flags, this.configDirectory)
    const client = await renterClient(target)
    const contract = await onDevnet(target, () => createContract(client, {offering_id: flags.offering, ssh_pubkey: flags['ssh-pubkey'], duration_hours: flags['duration-hours']}))
    this.log(`contract ${contract.contract_id}: ${contract.status}`)
    this.log(`follow it with: outpost devnet contract show ${[contract.contract_id, ...target.flags].join(' ')} --decrypt`)
    return contract
  }
}
