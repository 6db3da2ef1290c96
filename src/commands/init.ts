import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {passphraseFile} from '../cli/flags.js'
import {readGpuInventory} from '../gpu/inventory.js'
import {DEFAULT_ENDPOINT, initProvider, type InitResult} from '../setup/init.js'
import {paint} from '../ui/colors.js'
import {getPassphrase} from '../ui/passphrase.js'

export default class Init extends BaseCommand {
  static override summary = 'Create the agent key and outpost.toml'
  static override description =
    'Makes the agent key (and with --main-key a provider main key) in the config directory and writes outpost.toml. ' +
    'Never overwrites a key or config without --force; with --force the old files are kept as timestamped backups.'

  static override examples = ['<%= config.bin %> init', '<%= config.bin %> init --endpoint https://api.example.net --main-key']

  static override flags = {
    endpoint: Flags.string({description: 'marketplace API base URL', default: DEFAULT_ENDPOINT, env: 'OUTPOST_MARKETPLACE_ENDPOINT'}),
    'main-key': Flags.boolean({description: 'also create a provider main key (move it offline after registering)'}),
    force: Flags.boolean({description: 'replace existing keys and config, keeping timestamped backups'}),
    encrypt: Flags.boolean({description: 'encrypt the key files with a passphrase'}),
    'passphrase-file': passphraseFile,
  }

  async run(): Promise<InitResult> {
    const {flags} = await this.parse(Init)
    const passphrase = flags.encrypt ? await getPassphrase({fromFile: flags['passphrase-file'], confirm: true}) : undefined
    const result = initProvider({
      configDir: this.configDirectory,
      configFile: flags.config ? this.configFile(flags.config) : undefined,
      endpoint: flags.endpoint,
      mainKey: flags['main-key'],
      force: flags.force,
      passphrase,
      gpus: await readGpuInventory(),
    })
    this.log(`${paint.green('✓', process.stdout)} wrote ${result.config_file}`)
    this.log(`  agent key     ${result.agent_key.public_key}  ${result.agent_key.fingerprint}`)
    if (result.main_key) {
      this.log(`  provider key  ${result.main_key.public_key}  ${result.main_key.fingerprint}`)
      this.log(paint.yellow(`  ! ${result.main_key.file} can move your stake: keep it offline once registered`, process.stdout))
    }
    for (const backup of [result.config_backup, result.agent_key.backup, result.main_key?.backup]) {
      if (backup) this.log(`  kept a backup: ${backup}`)
    }
    if (result.gpu) this.log(`  GPUs          ${result.gpu.found}`)
    this.log('\nNext:')
    for (const step of result.next_steps) this.log(`  - ${step}`)
    return result
  }
}
