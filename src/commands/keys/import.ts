import {join} from 'node:path'
import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {passphraseFile} from '../../cli/flags.js'
import {importMainKey, type BackupResult} from '../../setup/key-backup.js'
import {MAIN_KEY_FILE_NAME} from '../../setup/init.js'
import {getPassphrase} from '../../ui/passphrase.js'

export default class KeysImport extends BaseCommand {
  static override summary = 'Restore the provider main key from an encrypted backup'
  static override description =
    'Opens the backup with its passphrase (a wrong one changes nothing), then writes the main key, encrypted with the ' +
    'same passphrase, mode 0600, to --to (default: provider-main.key in the config directory). A plain key file is not ' +
    'a backup and is refused. An existing key is replaced only with --force, and kept as <file>.bak-<time>.'

  static override examples = ['<%= config.bin %> keys import /media/usb/provider-main.backup', '<%= config.bin %> keys import backup.key --to ~/provider-main.key --passphrase-file ~/.pass --json']

  static override args = {backup: Args.string({description: 'the backup made by `outpost keys export`', required: true})}
  static override flags = {
    'passphrase-file': passphraseFile,
    to: Flags.string({description: 'where to restore the main key (default: provider-main.key in the config directory)'}),
    force: Flags.boolean({description: 'replace an existing main key file (kept as <file>.bak-<time>)'}),
  }

  async run(): Promise<BackupResult> {
    const {args, flags} = await this.parse(KeysImport)
    const result = await importMainKey({
      from: args.backup,
      to: flags.to ?? join(this.configDirectory, MAIN_KEY_FILE_NAME),
      force: flags.force,
      passphrase: () => getPassphrase({fromFile: flags['passphrase-file']}),
    })
    this.log(`main key ${result.public_key}  ${result.fingerprint}\n  restored to ${result.file} (encrypted, mode 0600)`)
    if (result.replaced) this.log(`  the file that was there is kept as ${result.replaced}`)
    return result
  }
}
