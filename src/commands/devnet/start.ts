import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {duration} from '../../cli/flags.js'
import {ExitCode, UserError} from '../../core/errors.js'
import {waitForStopSignal} from '../../core/signals.js'
import {DEFAULT_DEVNET_PORT} from '../../devnet/defaults.js'
import {devnetDataDir} from '../../devnet/flags.js'
import {startDevnet} from '../../devnet/start.js'

const trapRatio = Flags.custom<number>({
  parse: async (text) => {
    const ratio = Number(text)
    if (text.trim() === '' || !Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
      throw new UserError(`--trap-ratio: "${text}" is not a ratio from 0 to 1`, {code: 'usage', exit: ExitCode.usage, suggestion: 'write it like 0.1 (one trap per ten renter jobs of a kind)'})
    }
    return ratio
  },
})

export default class DevnetStart extends BaseCommand {
  static override summary = 'Run the reference marketplace on this machine'
  static override description =
    'Serves PROTOCOL v1 over HTTP with its state in SQLite under --data-dir, until SIGINT or SIGTERM (in-flight requests ' +
    'finish and the database closes). Where it listens is recorded in the data dir and in the config dir, so the ' +
    '`outpost devnet` renter commands use it without --endpoint. With --json it prints one line, {"endpoint", ' +
    '"data_dir", "pid", "recorded_in"}, once listening.'

  static override examples = [
    '<%= config.bin %> devnet start',
    '<%= config.bin %> devnet start --port 0 --json --unbonding-period 30s',
    '<%= config.bin %> devnet start --trap-ratio 0.1',
  ]

  static override flags = {
    port: Flags.integer({description: 'TCP port; 0 picks a free one', default: DEFAULT_DEVNET_PORT, min: 0, max: 65_535}),
    host: Flags.string({description: 'address to listen on', default: '127.0.0.1'}),
    'data-dir': Flags.string({description: 'where the database and the renter key live (default: <config dir>/devnet)', env: 'OUTPOST_DEVNET_DATA_DIR'}),
    'unbonding-period': duration({description: 'how long unstaked tokens stay bonded, like 7d or 30s', default: '7d'}),
    'rate-limit': Flags.integer({description: 'requests per second allowed per signing key (default 100, a burst of 2 s)', min: 1}),
    'address-rate-limit': Flags.integer({description: 'requests per second allowed per client address, signed or not (default 500)', min: 1}),
    'max-long-polls-per-key': Flags.integer({description: 'long polls one key may hold at once (default 4)', min: 1}),
    'max-long-polls': Flags.integer({description: 'long polls held at once in all (default 1000)', min: 1}),
    'benchmark-attempts-per-hour': Flags.integer({description: 'benchmark challenges, so verified reports, per provider per hour (default 12)', min: 1}),
    'benchmark-verifications-per-minute': Flags.integer({description: 'benchmark reports verified per minute, all providers together (default 12)', min: 1}),
    'max-nonces': Flags.integer({description: 'request nonces remembered at once, the replay store (default 1000000)', min: 1}),
    'health-checks-per-contract': Flags.integer({description: 'health checks kept per contract (default 10000)', min: 1}),
    'trap-ratio': trapRatio({description: 'known-answer jobs (traps) mixed in per renter job of each kind, 0 to 1: 0.1 adds one trap per ten jobs', default: 0}),
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
      addressRateLimitPerSecond: flags['address-rate-limit'],
      maxLongPollsPerKey: flags['max-long-polls-per-key'],
      maxLongPolls: flags['max-long-polls'],
      benchmarkAttemptsPerHour: flags['benchmark-attempts-per-hour'],
      benchmarkVerificationsPerMinute: flags['benchmark-verifications-per-minute'],
      maxNonces: flags['max-nonces'],
      healthChecksPerContract: flags['health-checks-per-contract'],
      trapRatio: flags['trap-ratio'],
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
