import * as Args from '@oclif/core/args'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags, marketplaceFlags} from '../../cli/flags.js'
import {mainKeySession} from '../../core/api/session.js'
import {depositToStake, type StakeChange} from '../../stake/stake.js'

export default class StakeDeposit extends BaseCommand {
  static override summary = 'Stake tokens (signed with the provider main key)'
  static override description = 'The amount is an exact decimal with at most 6 digits after the point; a higher stake raises the tier, and with it how many contracts the marketplace hands out at once.'
  static override examples = ['<%= config.bin %> stake deposit 1000 --main-key-file ~/provider-main.key', '<%= config.bin %> stake deposit 12.5']

  static override args = {amount: Args.string({description: 'amount to stake, like 1000 or 12.5', required: true})}
  static override flags = {...marketplaceFlags, ...mainKeyFlags}

  async run(): Promise<StakeChange> {
    const {args, flags} = await this.parse(StakeDeposit)
    const session = mainKeySession(this.loadConfig(flags.config), await this.mainKey(flags, 'staking'))
    const change = await depositToStake(session, args.amount)
    this.log(`staked ${change.amount}: now ${change.stake.staked}, tier ${change.tier_changed ? `${change.tier_before} → ${change.tier_after}` : change.tier_after}`)
    return change
  }
}
