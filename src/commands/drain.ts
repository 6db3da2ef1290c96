import {BaseCommand} from '../cli/base-command.js'
import {duration} from '../cli/flags.js'
import {drainAgent, type DrainResult} from '../status/drain.js'

export default class Drain extends BaseCommand {
  static override summary = 'Drain the running agent: it takes no new work, finishes what runs, then stops'
  static override description =
    'Signals the `outpost run` of this config (its pid file in the state dir) to drain: it heartbeats `status: draining` ' +
    '(PROTOCOL §5) so the marketplace sends it no new contracts, finishes the provisioning and terminations in progress ' +
    '(within its --shutdown-timeout), flushes its outbox and exits 0. Waits until it has. The systemd unit uses it for ExecStop.'

  static override examples = ['<%= config.bin %> drain', '<%= config.bin %> drain --timeout 5m --json']

  static override flags = {
    timeout: duration({description: 'how long to wait for the agent to finish, like 90s or 5m', default: '120s'}),
  }

  async run(): Promise<DrainResult> {
    const {flags} = await this.parse(Drain)
    const loaded = this.loadConfig(flags.config)
    const result = await drainAgent({
      stateDir: loaded.paths.stateDir,
      timeoutMs: flags.timeout,
      onWaiting: (pid) => this.log(`draining the agent (pid ${pid}): no new work; waiting for what runs to finish…`),
    })
    this.log(`the agent (pid ${result.pid}) finished its work and stopped after ${result.seconds} s`)
    return result
  }
}
