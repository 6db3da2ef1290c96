import * as Flags from '@oclif/core/flags'

import {answerFlag} from '../cli/answers.js'
import {BaseCommand} from '../cli/base-command.js'
import {passphraseFile} from '../cli/flags.js'
import {readGpuInventory} from '../gpu/inventory.js'
import {INIT_ANSWERS as ANSWERS} from '../setup/init-answers.js'
import {initProvider, type InitResult} from '../setup/init.js'
import {describeOffering} from '../setup/offerings.js'
import {inquirerAsker} from '../ui/asker.js'
import {paint} from '../ui/colors.js'
import {canPrompt} from '../ui/interactive.js'
import {getPassphrase, passphraseAvailable} from '../ui/passphrase.js'

export default class Init extends BaseCommand {
  static override summary = 'Create the agent key (and the provider main key) and outpost.toml'
  static override description =
    'In a terminal it asks for the marketplace URL, your provider name and contact email, and offers offerings sized ' +
    "from this host's capacity; every question has a flag and an OUTPOST_* variable, and with no terminal, CI=true, " +
    '--yes or --json nothing is asked. With --main-key it also makes the provider main key, encrypted with a passphrase ' +
    'unless --no-encrypt. Every answer is checked before any file is written. Never overwrites a key or config without ' +
    '--force (the old files are kept as timestamped backups); on an existing config it only adds a missing [provider] ' +
    "and [[offerings]] (sized from the configured backend's capacity)."

  static override examples = [
    '<%= config.bin %> init --main-key',
    '<%= config.bin %> init --endpoint https://api.example.net --main-key --passphrase-file ~/.outpost-pass --name "Acme Compute" --contact-email ops@acme.example --offerings small,medium',
    '<%= config.bin %> init --offerings all --price-per-core 0.03   # on a config made by `setup proxmox`',
  ]

  static override flags = {
    endpoint: answerFlag(ANSWERS.endpoint),
    name: answerFlag(ANSWERS.name),
    'contact-email': answerFlag(ANSWERS['contact-email']),
    offerings: answerFlag(ANSWERS.offerings),
    'price-per-core': answerFlag(ANSWERS['price-per-core']),
    'main-key': Flags.boolean({description: 'also create a provider main key, encrypted (move it offline after registering)'}),
    encrypt: Flags.boolean({
      description: 'encrypt every key with a passphrase; --no-encrypt: none, not even the main key (default: the main key only)',
      allowNo: true,
    }),
    'passphrase-file': passphraseFile,
    force: Flags.boolean({description: 'replace existing keys and config, keeping timestamped backups'}),
    yes: Flags.boolean({char: 'y', description: 'ask nothing: take the defaults, and leave out what was not given'}),
  }

  async run(): Promise<InitResult> {
    const {flags} = await this.parse(Init)
    const mayAsk = !this.jsonEnabled() && canPrompt({yes: flags.yes})
    const fromFile = flags['passphrase-file']
    const result = await initProvider(
      {
        configFile: this.configFile(flags.config),
        answers: flags,
        mainKey: flags['main-key'],
        force: flags.force,
        encrypt: flags.encrypt,
        gpus: await readGpuInventory(),
      },
      {
        asker: mayAsk ? inquirerAsker() : undefined,
        newPassphrase: passphraseAvailable({fromFile, mayPrompt: mayAsk}) ? () => getPassphrase({fromFile, confirm: true, mayPrompt: mayAsk}) : undefined,
      },
    )
    this.report(result)
    return result
  }

  private report(result: InitResult): void {
    const out = process.stdout
    this.log(`${paint.green('✓', out)} ${result.config_status === 'created' ? 'wrote' : 'updated'} ${result.config_file}`)
    const keys = [
      ['agent key', result.agent_key],
      ['provider key', result.main_key],
    ] as const
    for (const [label, key] of keys) {
      if (key) this.log(`  ${label.padEnd(13)} ${key.public_key}  ${key.fingerprint}${key.encrypted ? '  (encrypted)' : ''}${key.status === 'kept' ? '  (kept)' : ''}`)
    }
    if (result.main_key) this.log(paint.yellow(`  ! ${result.main_key.file} can move your stake: keep it offline once registered`, out))
    this.log(`  provider      ${result.provider ? `${result.provider.name} <${result.provider.contact_email}>` : 'not set'}`)
    if (result.offerings.length === 0) this.log('  offerings     none yet: nothing can be rented')
    for (const offering of result.offerings) this.log(`  offering      ${describeOffering(offering)}`)
    if (result.capacity) this.log(`                (sized from ${result.capacity.source})`)
    if (result.gpu) this.log(`  GPUs          ${result.gpu.found}`)
    for (const backup of [result.config_backup, result.agent_key.backup, result.main_key?.backup]) {
      if (backup) this.log(`  kept a backup: ${backup}`)
    }
    for (const warning of result.warnings) this.warning(warning)
    this.log('\nNext:')
    for (const step of result.next_steps) this.log(`  - ${step}`)
  }
}
