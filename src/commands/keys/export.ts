import {existsSync} from 'node:fs'
import {join} from 'node:path'
import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags} from '../../cli/flags.js'
import {ExitCode, UserError} from '../../core/errors.js'
import {exportMainKey, type BackupResult} from '../../setup/key-backup.js'
import {MAIN_KEY_FILE_NAME} from '../../setup/init.js'
import {getPassphrase} from '../../ui/passphrase.js'

export default class KeysExport extends BaseCommand {
  static override summary = 'Write an encrypted backup of the provider main key'
  static override description =
    'The backup is an encrypted key file (scrypt and XSalsa20-Poly1305), mode 0600, usable as --main-key-file as it is; ' +
    'never a plain one. An encrypted main key keeps its passphrase; a plain one needs a new passphrase (asked twice in a ' +
    'terminal, else --passphrase-file or OUTPOST_KEY_PASSPHRASE). An existing file is replaced only with --force.'

  static override examples = ['<%= config.bin %> keys export /media/usb/provider-main.backup', '<%= config.bin %> keys export backup.key --main-key-file ~/provider-main.key --passphrase-file ~/.pass --json']

  static override args = {file: Args.string({description: 'where to write the backup', required: true})}
  static override flags = {
    ...mainKeyFlags,
    force: Flags.boolean({description: 'replace an existing file (kept as <file>.bak-<time>)'}),
  }

  async run(): Promise<BackupResult> {
    const {args, flags} = await this.parse(KeysExport)
    const fallback = join(this.configDirectory, MAIN_KEY_FILE_NAME)
    const mainKey = flags['main-key-file'] ?? (existsSync(fallback) ? {path: fallback, encrypted: undefined} : undefined)
    if (!mainKey) {
      throw new UserError(`no main key file given, and none at ${fallback}`, {code: 'main_key_required', exit: ExitCode.usage, suggestion: 'pass --main-key-file FILE or set OUTPOST_MAIN_KEY_FILE'})
    }
    const result = await exportMainKey({
      mainKeyFile: mainKey.path,
      to: args.file,
      force: flags.force,
      // A plain key gets a new passphrase, asked twice; an encrypted one is opened with its own, which checks it.
      passphrase: () => getPassphrase({fromFile: flags['passphrase-file'], confirm: mainKey.encrypted !== true}),
    })
    this.log(`encrypted backup of main key ${result.public_key}  ${result.fingerprint}\n  written to ${result.file} (mode 0600)`)
    if (result.replaced) this.log(`  the file that was there is kept as ${result.replaced}`)
    this.log('Keep it apart from this host; restore it with `outpost keys import`.')
    return result
  }
}
