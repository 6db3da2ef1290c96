import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {duration} from '../../cli/flags.js'
import {waitForStopSignal} from '../../core/signals.js'
import {DEFAULT_DEVNET_PORT} from '../../devnet/defaults.js'
import {devnetDataDir} from '../../devnet/flags.js'
import {startDevnet} from '../../devnet/start.js'

export default class DevnetStart extends BaseCommand {
  static override summary = 'Run the reference marketplace on this machine'
  static override description =
    'Serves PROTOCOL v1 over HTTP with its state in SQLite under --data-dir, until SIGINT or SIGTERM (in-flight requests ' +
    'finish and the database closes). Where it listens is recorded in the data dir and in the config dir, so the ' +
    '`outpost devnet` renter commands use it without --endpoint. With --json it prints one line, {"endpoint", ' +
    '"data_dir", "pid", "recorded_in"}, once listening.'

  static override examples = ['<%= config.bin %> devnet start', '<%= config.bin %> devnet start --port 0 --json --unbonding-period 30s']

  static override flags = {
    port: Flags.integer({description: 'TCP port; 0 picks a free one', default: DEFAULT_DEVNET_PORT, min: 0, max: 65_535}),
    host: Flags.string({description: 'address to listen on', default: '127.0.0.1'}),
    'data-dir': Flags.string({description: 'where the database and the renter key live (default: <config dir>/devnet)', env: 'OUTPOST_DEVNET_DATA_DIR'}),
    'unbonding-period': duration({description: 'how long unstaked tokens stay bonded, like 7d or 30s', default: '7d'}),
    'rate-limit': Flags.integer({description: 'requests per second allowed per key', min: 1}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(DevnetStart)
    const dataDir = devnetDataDir(flags['data-dir'], this.configDirectory)
    const stopRequested = waitForStopSignal()
    const devnet = await startDevnet({
      dataDir,
      port: flags.port,
      host: flags.host,
      unbondingPeriodMs: flags['unbonding-period'],
      rateLimitPerSecond: flags['rate-limit'],
      configDir: this.configDirectory,
    })
    const {endpoint} = devnet.server
    if (this.jsonEnabled()) process.stdout.write(JSON.stringify({endpoint, data_dir: dataDir, pid: process.pid, recorded_in: devnet.recordedIn}) + '\n')
    this.log(`devnet listening on ${endpoint} (data: ${dataDir})`)
    this.log(`recorded in ${devnet.recordedIn.join(' and ')}: the \`outpost devnet\` renter commands use this devnet`)
    this.log('\nNext, in another terminal:')
    this.log(`  outpost init --endpoint ${endpoint} --main-key        a provider for this marketplace (it asks the rest)`)
    this.log('  outpost register --main-key-file <the main key init made>')
    this.log('  outpost run                                         the agent, which provisions what is rented')
    this.log('  outpost devnet offerings                            what renters can rent')
    this.log('  outpost devnet contract create --offering <id> --ssh-pubkey ~/.ssh/id_ed25519.pub')
    this.log('\nstop it with Ctrl-C')
    const signal = await stopRequested
    await devnet.stop()
    this.log(`stopped on ${signal}; database closed`)
  }
}
