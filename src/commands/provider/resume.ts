import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags} from '../../cli/flags.js'
import {setProviderStatus, type ProviderStatusResult} from '../../status/provider-status.js'

export default class ProviderResume extends BaseCommand {
  static override summary = 'Resume the provider: its offerings take new contracts again'
  static override description = 'PROTOCOL §5 PUT /status with the main key: undoes `outpost provider pause`.'
  static override examples = ['<%= config.bin %> provider resume --main-key-file ~/provider-main.key']

  static override flags = {
    ...mainKeyFlags,
    reason: Flags.string({description: 'why, as the marketplace shows it (at most 512 characters)'}),
  }

  async run(): Promise<ProviderStatusResult> {
    const {flags} = await this.parse(ProviderResume)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await this.mainKey(flags, 'resuming the provider')
    const result = await setProviderStatus({loaded, mainKey, status: 'active', reason: flags.reason})
    this.log(`provider ${result.provider_pubkey} is ${result.status}${result.reason ? ` (${result.reason})` : ''}`)
    this.log('its offerings take new contracts again.')
    return result
  }
}
