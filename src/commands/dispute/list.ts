import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags, marketplaceFlags} from '../../cli/flags.js'
import {DISPUTE_STATUSES, listDisputes, type ProviderDispute} from '../../core/api/disputes.js'
import {renderTable} from '../../ui/table.js'
import {DISPUTE_HEADER, disputeRow} from '../../dispute/disputes.js'
import {mainKeySession} from '../../core/api/session.js'

export default class DisputeList extends BaseCommand {
  static override summary = "List the provider's disputes (signed with the provider main key)"
  static override examples = ['<%= config.bin %> dispute list --status open']

  static override flags = {
    ...marketplaceFlags,
    ...mainKeyFlags,
    status: Flags.option({description: 'only disputes in this state', options: DISPUTE_STATUSES})(),
  }

  async run(): Promise<{disputes: ProviderDispute[]}> {
    const {flags} = await this.parse(DisputeList)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await this.mainKey(flags, 'reading disputes')
    const session = mainKeySession(loaded, mainKey)
    const disputes = await listDisputes(session.client, session.providerPubkey, flags.status)
    if (disputes.length === 0) this.log(flags.status ? `no ${flags.status} disputes` : 'no disputes')
    else this.log(renderTable(DISPUTE_HEADER, disputes.map(disputeRow)))
    return {disputes}
  }
}
