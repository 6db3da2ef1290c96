import {Args} from '@oclif/core'

import {mainKeyFlags} from '../../stake/flags.js'
import {mainKeySession, readMainKey} from '../../stake/main-key.js'
import {depositToStake, type StakeChange} from '../../stake/stake.js'
import {BaseCommand} from '../../ui/base-command.js'
import {getPassphrase} from '../../ui/passphrase.js'

export default class StakeDeposit extends BaseCommand {
  static override summary = 'Stake tokens (signed with the provider main key)'
  static override description = 'The amount is an exact decimal with at most 6 digits after the point; a higher stake raises the tier, and with it how many contracts the marketplace hands out at once.'
  static override examples = ['<%= config.bin %> stake deposit 1000 --main-key-file ~/provider-main.key', '<%= config.bin %> stake deposit 12.5']

  static override args = {amount: Args.string({description: 'amount to stake, like 1000 or 12.5', required: true})}
  static override flags = {...mainKeyFlags}

  async run(): Promise<StakeChange> {
    const {args, flags} = await this.parse(StakeDeposit)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await readMainKey({file: flags['main-key-file'], passphrase: () => getPassphrase({file: flags['passphrase-file']})}, 'staking')
    const change = await depositToStake(mainKeySession(loaded, mainKey), args.amount)
    this.log(`staked ${change.amount}: now ${change.stake.staked}, tier ${change.tier_changed ? `${change.tier_before} → ${change.tier_after}` : change.tier_after}`)
    return change
  }
}
