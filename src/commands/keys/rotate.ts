import {BaseCommand} from '../../cli/base-command.js'
import {duration, mainKeyFlags, marketplaceFlags} from '../../cli/flags.js'
import {readKeyFileContent} from '../../core/keys.js'
import {rotateAgentKey, type RotateResult} from '../../setup/keys.js'
import {getPassphrase} from '../../ui/passphrase.js'

export default class KeysRotate extends BaseCommand {
  static override summary = 'Replace the agent key with a new one and end the old delegation'
  static override description =
    'Creates a new agent key with the same permissions, points the config at it (atomically), and ends the old ' +
    'delegation when the grace period is over (at once with --grace 0). Restart `outpost run` to use the new key.'

  static override examples = ['<%= config.bin %> keys rotate --main-key-file ~/provider-main.key --grace 24h']

  static override flags = {
    ...marketplaceFlags,
    ...mainKeyFlags,
    grace: duration({description: 'how long the old key keeps working, like 24h, or 0', default: '24h'}),
  }

  async run(): Promise<RotateResult> {
    const {flags} = await this.parse(KeysRotate)
    const loaded = this.loadConfig(flags.config)
    const mainKey = await this.mainKey(flags, 'rotating the agent key')
    const encrypted = 'encrypted' in readKeyFileContent(loaded.paths.keyFile)
    // The new key is encrypted as the old one was, with the same passphrase.
    const passphrase = encrypted ? await getPassphrase({fromFile: flags['passphrase-file']}) : undefined
    const result = await rotateAgentKey({loaded, mainKey, graceMs: flags.grace, passphrase})
    this.log(`new agent key ${result.new_agent.public_key}  ${result.new_agent.fingerprint}`)
    this.log(`  written to ${result.new_agent.file}; ${result.config_file} now points at it`)
    this.log(
      result.old_delegation.revoked_at === null
        ? `old key ${result.old_agent_pubkey} keeps working until ${new Date(result.old_delegation.expires_at ?? 0).toISOString()}`
        : `old key ${result.old_agent_pubkey} revoked`,
    )
    this.log('Restart `outpost run` to use the new key.')
    return result
  }
}
