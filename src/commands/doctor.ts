import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../cli/base-command.js'
import {marketplaceFlags, passphraseFile} from '../cli/flags.js'
import {runDoctor, type CheckResult} from '../setup/doctor.js'
import {paint} from '../ui/colors.js'

const MARKS: Record<CheckResult['status'], (stream: NodeJS.WriteStream) => string> = {
  pass: (stream) => paint.green('✓', stream),
  warn: (stream) => paint.yellow('!', stream),
  fail: (stream) => paint.red('✗', stream),
  skip: (stream) => paint.dim('-', stream),
}

export default class Doctor extends BaseCommand {
  static override summary = 'Check the configuration, keys, provisioner and (with --verify-api) the marketplace'
  static override description = 'One line per check, with the remedy for each failure. Exits 0 only when every check passes; 3 when the config is missing or invalid, 6 when another check fails.'

  static override flags = {
    ...marketplaceFlags,
    'passphrase-file': passphraseFile,
    'verify-api': Flags.boolean({description: 'also check the marketplace: reachability, clock skew, delegation and permissions'}),
  }

  async run(): Promise<{ok: boolean; checks: CheckResult[]}> {
    const {flags} = await this.parse(Doctor)
    const {checks, ok, exit} = await runDoctor({
      configFile: this.configFile(flags.config),
      passphrase: this.passphrase(flags),
      verifyApi: flags['verify-api'],
      allowInsecureHttp: flags['allow-insecure-http'],
    })
    for (const check of checks) {
      this.log(`${MARKS[check.status](process.stdout)} ${check.name}: ${check.message}`)
      if (check.remedy && check.status !== 'pass') this.log(`    ${paint.dim('→', process.stdout)} ${check.remedy}`)
    }
    if (!ok) process.exitCode = exit
    return {ok, checks}
  }
}
