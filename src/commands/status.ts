import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../cli/base-command.js'
import {passphraseFile} from '../cli/flags.js'
import {waitForStopSignal} from '../core/signals.js'
import type {KeyPair} from '../core/signing.js'
import {describeError} from '../core/errors.js'
import {renderStatus, renderStatusLine} from '../status/render.js'
import {collectStatus, type StatusReport} from '../status/status.js'

export default class Status extends BaseCommand {
  static override summary = 'Show the agent, the marketplace’s view of this provider, the money, and what needs attention'
  static override description =
    'The agent (running, ready, version, last heartbeat acknowledged, outbox, work in flight: from its state dir and its ' +
    '/readyz), the marketplace (provider status, agent status, contracts by status, contracts waiting on the tier limit, ' +
    'health and uptime, leases), the money (stake, tier, rewards pending, usage billed in the last day), and each thing ' +
    'that needs attention with the command that fixes it. With --watch it refreshes: the whole view on a terminal, one ' +
    'line per refresh otherwise (one JSON object per line with --json).'

  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --watch 5', '<%= config.bin %> status --json']

  static override flags = {
    watch: Flags.integer({description: 'refresh every N seconds until interrupted', min: 1, max: 3600}),
    'passphrase-file': passphraseFile,
  }

  async run(): Promise<StatusReport | undefined> {
    const {flags} = await this.parse(Status)
    const loaded = this.loadConfig(flags.config)
    let agentKey: KeyPair | undefined
    let agentKeyProblem: string | undefined
    try {
      agentKey = loaded.config.marketplace.provider_pubkey ? await this.agentKey(flags) : undefined
    } catch (error) {
      agentKeyProblem = describeError(error)
    }
    const collect = () => collectStatus({loaded, agentKey, ...(agentKeyProblem ? {agentKeyProblem} : {})})
    if (flags.watch === undefined) {
      const report = await collect()
      for (const line of renderStatus(report)) this.log(line)
      return report
    }
    await this.watch(collect, flags.watch * 1000)
    return undefined
  }

  /** Refreshes until SIGINT or SIGTERM: the whole view redrawn on a terminal, else one line (or JSON object) per refresh. */
  private async watch(collect: () => Promise<StatusReport>, intervalMs: number): Promise<void> {
    let stopped = false
    let wake: () => void = () => undefined
    void waitForStopSignal().then(() => {
      stopped = true
      wake()
    })
    const terminal = process.stdout.isTTY === true && !this.jsonEnabled()
    while (!stopped) {
      const report = await collect()
      if (this.jsonEnabled()) process.stdout.write(JSON.stringify(report) + '\n')
      else if (terminal) process.stdout.write(`\u001B[H\u001B[2J${renderStatus(report).join('\n')}\n\n(refreshing every ${intervalMs / 1000} s; Ctrl-C to stop)\n`)
      else this.log(renderStatusLine(report))
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs)
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    this.exit(0)
  }
}
