import {loadConfig} from '../../core/config/load.js'
import {serviceStatus, type ServiceStatus} from '../../setup/service.js'
import {BaseCommand} from '../../cli/base-command.js'
import {unitDirFlag} from './install.js'

export default class ServiceStatusCommand extends BaseCommand {
  static override summary = 'Show whether the service is installed and running, and the agent health endpoint'

  static override flags = {
    'unit-dir': unitDirFlag,
  }

  async run(): Promise<ServiceStatus> {
    const {flags} = await this.parse(ServiceStatusCommand)
    let listen: string | undefined
    try {
      const {config} = loadConfig(this.configFile(flags.config))
      listen = config.metrics.enabled ? config.metrics.listen : undefined
    } catch {
      listen = undefined
    }
    const status = await serviceStatus(flags['unit-dir'], listen)
    this.log(`unit     ${status.installed ? status.unit_file : 'not installed'}`)
    this.log(`systemd  ${status.systemd ? (status.active ?? 'installed unit not loaded') : 'not running on this host'}`)
    if (status.health) this.log(`health   ${status.health.url}: ${status.health.ok ? 'ok' : status.health.detail}`)
    return status
  }
}
