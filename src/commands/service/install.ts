import {join} from 'node:path'
import * as Flags from '@oclif/core/flags'

import {installService, renderService, type InstallResult} from '../../setup/service.js'
import {BaseCommand} from '../../cli/base-command.js'

export const unitDirFlag = Flags.string({description: 'where the systemd unit goes', default: '/etc/systemd/system', env: 'OUTPOST_SERVICE_UNIT_DIR'})
export const logrotateDirFlag = Flags.string({description: 'where the logrotate file goes', default: '/etc/logrotate.d', env: 'OUTPOST_SERVICE_LOGROTATE_DIR'})

export default class ServiceInstall extends BaseCommand {
  static override summary = 'Install `outpost run` as a systemd service'
  static override description =
    'Writes a hardened systemd unit (runs as the outpost user, Restart=always, NoNewPrivileges, ProtectSystem=strict, ' +
    'ReadWritePaths for the state dir, PrivateTmp, UMask=0077) and, with --log-file, a logrotate file; then enables and starts it ' +
    'when systemd runs here.'

  static override examples = ['sudo <%= config.bin %> service install', '<%= config.bin %> service install --dry-run']

  static override flags = {
    user: Flags.string({description: 'system user the agent runs as', default: 'outpost', env: 'OUTPOST_SERVICE_USER'}),
    group: Flags.string({description: 'its group (default: the user name)', env: 'OUTPOST_SERVICE_GROUP'}),
    'unit-dir': unitDirFlag,
    'log-file': Flags.string({description: 'append logs to this file (rotated by logrotate) instead of the journal'}),
    'logrotate-dir': logrotateDirFlag,
    start: Flags.boolean({description: 'enable and start the service', default: true, allowNo: true}),
    'dry-run': Flags.boolean({description: 'print the unit (and logrotate file) instead of writing them'}),
  }

  async run(): Promise<InstallResult | {unit: string; logrotate?: string; warnings: string[]}> {
    const {flags} = await this.parse(ServiceInstall)
    const loaded = this.loadConfig(flags.config)
    const options = {
      user: flags.user,
      group: flags.group ?? flags.user,
      configDir: this.configDirectory,
      nodePath: process.execPath,
      binPath: join(this.config.root, 'bin', 'run.js'),
      unitDir: flags['unit-dir'],
      logFile: flags['log-file'],
      logrotateDir: flags['logrotate-dir'],
    }
    if (flags['dry-run']) {
      const rendered = renderService(loaded, options)
      this.log(`# ${rendered.unitFile}\n${rendered.unit}`)
      if (rendered.logrotate) this.log(`# ${rendered.logrotateFile}\n${rendered.logrotate}`)
      for (const warning of rendered.warnings) this.warning(warning)
      return {unit: rendered.unit, ...(rendered.logrotate ? {logrotate: rendered.logrotate} : {}), warnings: rendered.warnings}
    }
    const result = await installService(loaded, {...options, start: flags.start})
    this.log(`wrote ${result.unit_file}${result.logrotate_file ? ` and ${result.logrotate_file}` : ''}`)
    if (result.started) this.log('outpost.service is enabled and running')
    for (const warning of result.warnings) this.warning(warning)
    for (const step of result.next_steps) this.log(`next: ${step}`)
    return result
  }
}
