import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {ManualRequestStore, type ManualRequest} from '../../provisioners/manual/requests.js'
import {BaseCommand} from '../../cli/base-command.js'

export default class ContractFail extends BaseCommand {
  static override summary = 'Answer a manual provisioning request: the machine cannot be provided'
  static override description =
    'For [provisioner] type = "manual": the waiting agent reports the contract provisioning_failed with your reason. ' +
    'With --retry the marketplace may offer the contract again; without it the renter is refunded.'

  static override examples = ['<%= config.bin %> contract fail 3f2a...e9 --reason "no GPU host free this week"']

  static override args = {id: Args.string({description: 'contract id (32 hex characters)', required: true})}

  static override flags = {
    reason: Flags.string({description: 'why, shown to the marketplace', required: true}),
    retry: Flags.boolean({description: 'another attempt may succeed later', default: false}),
  }

  async run(): Promise<ManualRequest> {
    const {args, flags} = await this.parse(ContractFail)
    const loaded = this.loadConfig(flags.config)
    const request = new ManualRequestStore(loaded.paths.stateDir).fail(args.id, flags.reason, flags.retry)
    this.log(`contract ${args.id}: failed (${flags.reason}); the agent reports it${flags.retry ? ', retry possible' : ''}`)
    return request
  }
}
