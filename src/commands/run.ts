import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../cli/base-command.js'
import {marketplaceFlags, passphraseFile} from '../cli/flags.js'
import {waitForStopSignal} from '../core/signals.js'

export default class Run extends BaseCommand {
  static override summary = 'Run the provider agent: provision accepted contracts, report health and usage, end what has ended'
  static override description =
    'Heartbeats, takes new contracts by long poll, provisions each exactly once, seals the credentials to the renter, and ' +
    'reports through a durable outbox. SIGTERM or SIGINT stops it cleanly: work in progress finishes or is checkpointed ' +
    'within --shutdown-timeout, and the next run resumes it. Metrics are on [metrics] listen (/metrics, /healthz, /readyz).'

  static override examples = ['<%= config.bin %> run', '<%= config.bin %> run --once', '<%= config.bin %> run --prune-orphans --shutdown-timeout 60']

  static override flags = {
    ...marketplaceFlags,
    once: Flags.boolean({description: 'run one round (heartbeat, reconcile, pending contracts, health, usage) and exit'}),
    'prune-orphans': Flags.boolean({description: 'destroy outpost-* instances the marketplace knows no contract for'}),
    'shutdown-timeout': Flags.integer({description: 'seconds to finish work in progress after SIGTERM/SIGINT', default: 30, min: 0, max: 3600}),
    'passphrase-file': passphraseFile,
  }

  async run(): Promise<unknown> {
    const {flags} = await this.parse(Run)
    // Before anything slow loads: a stop asked for while the agent starts is a clean stop, not a kill.
    const stopRequested = flags.once ? undefined : waitForStopSignal({secondSignalExits: true})
    const loaded = this.loadConfig(flags.config)
    const key = await this.agentKey(flags)
    // Loaded here, not at the top: pino, prom-client and the backends stay out of every other command's start.
    const [{createProvisioner}, {runAgentService}] = await Promise.all([import('../provisioners/index.js'), import('../agent/service.js')])
    return runAgentService({
      loaded,
      key,
      createProvisioner: (logger) => createProvisioner(loaded, {logger}),
      version: this.config.version,
      once: flags.once,
      pruneOrphans: flags['prune-orphans'],
      shutdownTimeoutMs: flags['shutdown-timeout'] * 1000,
      logStream: this.jsonEnabled() ? process.stderr : process.stdout,
      passphrase: this.passphrase(flags),
      ...(stopRequested ? {stopRequested} : {}),
    })
  }
}
