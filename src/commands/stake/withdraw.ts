import * as Args from '@oclif/core/args'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags, marketplaceFlags, yesFlag} from '../../cli/flags.js'
import {mainKeySession} from '../../core/api/session.js'
import {planWithdrawal, withdrawFromStake, type StakeChange} from '../../stake/stake.js'
import {confirmOrRefuse} from '../../ui/confirm.js'
import {describeTime} from '../../ui/time.js'

export default class StakeWithdraw extends BaseCommand {
  static override summary = 'Unstake tokens: they unbond for the marketplace\'s period (7 days by default), then are released'
  static override examples = ['<%= config.bin %> stake withdraw 500', '<%= config.bin %> stake withdraw 0.5 --yes --json']

  static override args = {amount: Args.string({description: 'amount to unstake, like 500 or 0.25', required: true})}
  static override flags = {...marketplaceFlags, ...mainKeyFlags, ...yesFlag}

  async run(): Promise<StakeChange> {
    const {args, flags} = await this.parse(StakeWithdraw)
    const session = mainKeySession(this.loadConfig(flags.config), await this.mainKey(flags, 'withdrawing stake'))
    const plan = await planWithdrawal(session, args.amount)
    const tierNote = plan.tier_after === plan.tier_before ? `stays ${plan.tier_before}` : `drops from ${plan.tier_before} to ${plan.tier_after}`
    await confirmOrRefuse(`Unstake ${plan.amount} of ${plan.staked}? The tier ${tierNote}, and the amount unbonds before it is released.`, 'withdrawing stake', {
      yes: flags.yes,
      json: this.jsonEnabled(),
    })
    const change = await withdrawFromStake(session, plan)
    this.log(`unstaked ${change.amount}: now ${change.stake.staked}, tier ${change.tier_changed ? `${change.tier_before} → ${change.tier_after}` : change.tier_after}`)
    if (change.release_at !== undefined) this.log(`released ${describeTime(change.release_at)}`)
    return change
  }
}
