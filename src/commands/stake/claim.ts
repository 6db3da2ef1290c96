import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags, marketplaceFlags, yesFlag} from '../../cli/flags.js'
import {mainKeySession} from '../../core/api/session.js'
import {claimPendingRewards, stakeInfo, type ClaimOutcome} from '../../stake/stake.js'
import {confirmOrRefuse} from '../../ui/confirm.js'

export default class StakeClaim extends BaseCommand {
  static override summary = 'Claim the pending rewards (signed with the provider main key)'
  static override examples = ['<%= config.bin %> stake claim', '<%= config.bin %> stake claim --yes --json']

  static override flags = {...marketplaceFlags, ...mainKeyFlags, ...yesFlag}

  async run(): Promise<ClaimOutcome> {
    const {flags} = await this.parse(StakeClaim)
    const session = mainKeySession(this.loadConfig(flags.config), await this.mainKey(flags, 'claiming rewards'))
    const current = await stakeInfo(session)
    if (current.rewards_pending === '0') {
      this.log('no rewards pending: nothing to claim')
      return {claimed: '0', stake: current}
    }
    await confirmOrRefuse(`Claim ${current.rewards_pending} in rewards?`, 'claiming rewards', {yes: flags.yes, json: this.jsonEnabled()})
    const outcome = await claimPendingRewards(session)
    this.log(`claimed ${outcome.claimed}; rewards pending now ${outcome.stake.rewards_pending}`)
    return outcome
  }
}
