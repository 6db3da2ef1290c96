import {Flags} from '@oclif/core'

import {parseDuration} from '../../core/duration.js'
import {readKeyFile, readKeyFileContent} from '../../core/keys.js'
import {rotateAgentKey, type RotateResult} from '../../setup/keys.js'
import {BaseCommand} from '../../ui/base-command.js'
import {getPassphrase} from '../../ui/passphrase.js'

export default class KeysRotate extends BaseCommand {
  static override summary = 'Replace the agent key with a new one and end the old delegation'
  static override description =
    'Creates a new agent key with the same permissions, points the config at it (atomically), and ends the old ' +
    'delegation when the grace period is over (at once with --grace 0). Restart `outpost run` to use the new key.'

  static override examples = ['<%= config.bin %> keys rotate --main-key-file ~/provider-main.key --grace 24h']

  static override flags = {
    'main-key-file': Flags.string({description: 'provider main key file', env: 'OUTPOST_MAIN_KEY_FILE', required: true}),
    'passphrase-file': Flags.string({description: 'file holding the passphrase of encrypted keys'}),
    grace: Flags.string({description: 'how long the old key keeps working, like 24h, or 0', default: '24h'}),
  }

  async run(): Promise<RotateResult> {
    const {flags} = await this.parse(KeysRotate)
    const graceMs = parseDuration(flags.grace, '--grace')
    const loaded = this.loadConfig(flags.config)
    const passphraseSource = {file: flags['passphrase-file']}
    const mainKey = await readKeyFile(flags['main-key-file'], {passphrase: () => getPassphrase(passphraseSource)})
    const encrypted = 'encrypted' in readKeyFileContent(loaded.paths.keyFile)
    const result = await rotateAgentKey({loaded, mainKey, graceMs, passphrase: encrypted ? await getPassphrase(passphraseSource) : undefined})
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
