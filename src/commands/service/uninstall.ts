import {uninstallService} from '../../setup/service.js'
import {BaseCommand} from '../../cli/base-command.js'
import {logrotateDirFlag, unitDirFlag} from './install.js'

export default class ServiceUninstall extends BaseCommand {
  static override summary = 'Stop the service and remove its unit and logrotate file'

  static override flags = {
    'unit-dir': unitDirFlag,
    'logrotate-dir': logrotateDirFlag,
  }

  async run(): Promise<{removed: string[]}> {
    const {flags} = await this.parse(ServiceUninstall)
    const result = await uninstallService(flags['unit-dir'], flags['logrotate-dir'])
    this.log(result.removed.length > 0 ? `removed ${result.removed.join(', ')}` : 'nothing to remove: the service is not installed')
    return result
  }
}
