import {Flags} from '@oclif/core'

import {DISPUTE_STATUSES, listDisputes, type ProviderDispute} from '../../core/api/disputes.js'
import {renderTable} from '../../ui/table.js'
import {DISPUTE_HEADER, disputeRow} from '../../dispute/disputes.js'
import {mainKeyFlags} from '../../stake/flags.js'
import {mainKeySession, readMainKey} from '../../stake/main-key.js'
import {BaseCommand} from '../../ui/base-command.js'
import {getPassphrase} from '../../ui/passphrase.js'

export default class DisputeList extends BaseCommand {
  static override summary = "List the provider's disputes (signed with the provider main key)"
  static override examples = ['<%= config.bin %> dispute list --status open']

  static override flags = {
    ...mainKeyFlags,
    status: Flags.option({description: 'only disputes in this state', options: DISPUTE_STATUSES})(),
  }

  async run(): Promise<{disputes: ProviderDispute[]}> {
    const {flags} = await this.parse(DisputeList)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await readMainKey({file: flags['main-key-file'], passphrase: () => getPassphrase({file: flags['passphrase-file']})}, 'reading disputes')
    const session = mainKeySession(loaded, mainKey)
    const disputes = await listDisputes(session.client, session.providerPubkey, flags.status)
    if (disputes.length === 0) this.log(flags.status ? `no ${flags.status} disputes` : 'no disputes')
    else this.log(renderTable(DISPUTE_HEADER, disputes.map(disputeRow)))
    return {disputes}
  }
}
