import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {passphraseFile} from '../../cli/flags.js'
import {LEASE_STATUSES} from '../../core/api/job-schemas.js'
import {JOB_KINDS} from '../../core/api/job-kinds.js'
import {JobsApi} from '../../core/api/jobs.js'
import {agentKeySession} from '../../core/api/session.js'
import {LEASE_HEADER, leaseRow, listLeases, type LeaseListing} from '../../jobs/leases.js'
import {renderTable} from '../../ui/table.js'

export default class JobsList extends BaseCommand {
  static override summary = "List this provider's job leases (PROTOCOL §12): status, verdict, reward"
  static override description =
    'Signed with the agent key (it needs the fetch_jobs permission). The newest lease first; the totals add the ' +
    'rewards of accepted leases and the collateral that rejected and expired ones lost.'

  static override examples = ['<%= config.bin %> jobs list', '<%= config.bin %> jobs list --status rejected --kind zk_proof', '<%= config.bin %> jobs list --limit 20 --json']

  static override flags = {
    'passphrase-file': passphraseFile,
    status: Flags.option({description: 'only leases in this state', options: LEASE_STATUSES})(),
    kind: Flags.option({description: 'only jobs of this kind', options: JOB_KINDS})(),
    limit: Flags.integer({description: 'only the newest N leases', min: 1}),
  }

  async run(): Promise<LeaseListing> {
    const {flags} = await this.parse(JobsList)
    const loaded = this.loadConfig(flags.config)
    const session = agentKeySession(loaded, await this.agentKey(flags))
    const listing = await listLeases(new JobsApi(session.client, session.providerPubkey), {status: flags.status, kind: flags.kind, limit: flags.limit})
    if (listing.leases.length === 0) {
      const which = [flags.status, flags.kind].filter(Boolean).join(' ')
      this.log(`no ${which ? `${which} ` : ''}leases: jobs are leased by \`outpost run\` when [jobs] enabled = true`)
      return listing
    }
    this.log(renderTable(LEASE_HEADER, listing.leases.map(leaseRow)))
    const {totals} = listing
    const counts = Object.entries(totals.by_status).map(([status, count]) => `${count} ${status}`)
    this.log(`${totals.leases} lease(s): ${counts.join(', ')}; rewards ${totals.rewards}, forfeited ${totals.forfeited}`)
    return listing
  }
}
