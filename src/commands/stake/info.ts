import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFile, marketplaceFlags} from '../../cli/flags.js'
import {configuredClient} from '../../core/api/factory.js'
import {configuredProvider} from '../../core/api/session.js'
import {stakeInfo, type StakeSummary} from '../../stake/stake.js'
import {describeTime} from '../../ui/time.js'

export default class StakeInfo extends BaseCommand {
  static override summary = 'Show the stake, its tier and what it allows, unbonding amounts and pending rewards'
  static override description = 'A public read: it needs the provider public key ([marketplace] provider_pubkey, --provider-pubkey, or the main key file), never a secret.'
  static override examples = ['<%= config.bin %> stake info', '<%= config.bin %> stake info --json']

  static override flags = {
    ...marketplaceFlags,
    'main-key-file': mainKeyFile(),
    'provider-pubkey': Flags.string({description: 'provider public key (default: [marketplace] provider_pubkey)'}),
  }

  async run(): Promise<StakeSummary> {
    const {flags} = await this.parse(StakeInfo)
    const loaded = this.loadConfig(flags.config)
    const providerPubkey = flags['provider-pubkey'] ?? configuredProvider(loaded, flags['main-key-file']?.publicKey)
    const summary = await stakeInfo({client: configuredClient(loaded, 'interactive'), providerPubkey})
    this.log(`provider        ${summary.provider_pubkey}`)
    this.log(`staked          ${summary.staked}`)
    this.log(`tier            ${summary.tier} (${limit(summary.max_concurrent_contracts)})`)
    this.log(`next tier       ${summary.next_tier ? `${summary.next_tier.name} at ${summary.next_tier.minimum}: stake ${summary.next_tier.needed} more for ${limit(summary.next_tier.max_concurrent_contracts)}` : 'none: this is the top tier'}`)
    this.log(`rewards pending ${summary.rewards_pending}`)
    if (summary.unbonding.length === 0) this.log('unbonding       nothing')
    for (const entry of summary.unbonding) this.log(`unbonding       ${entry.amount}, released ${describeTime(entry.release_at)}`)
    return summary
  }
}

function limit(maxConcurrent: number | null): string {
  return maxConcurrent === null ? 'no limit on concurrent contracts' : `up to ${maxConcurrent} concurrent contracts`
}
