import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags} from '../../cli/flags.js'
import {setProviderStatus, type ProviderStatusResult} from '../../status/provider-status.js'

export default class ProviderPause extends BaseCommand {
  static override summary = 'Pause the provider: the marketplace offers no new contracts of it (running ones go on)'
  static override description = 'PROTOCOL §5 PUT /status with the main key. Contracts already running are not touched; `outpost provider resume` lifts it.'
  static override examples = ['<%= config.bin %> provider pause --main-key-file ~/provider-main.key --reason "host maintenance"']

  static override flags = {
    ...mainKeyFlags,
    reason: Flags.string({description: 'why, as the marketplace shows it (at most 512 characters)'}),
  }

  async run(): Promise<ProviderStatusResult> {
    const {flags} = await this.parse(ProviderPause)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await this.mainKey(flags, 'pausing the provider')
    const result = await setProviderStatus({loaded, mainKey, status: 'paused', reason: flags.reason})
    this.log(`provider ${result.provider_pubkey} is ${result.status}${result.reason ? ` (${result.reason})` : ''}`)
    this.log('no new contracts are offered; running ones go on. Undo with `outpost provider resume`.')
    return result
  }
}
