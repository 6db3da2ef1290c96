import {Flags} from '@oclif/core'

import {parseDuration} from '../../core/duration.js'
import {readKeyFile} from '../../core/keys.js'
import {runSteps} from '../../bench/progress.js'
import {BENCHMARK_TYPES, planBenchmark, resultRows, type BenchmarkOutcome} from '../../bench/run.js'
import {renderTable} from '../../ui/table.js'
import {mainKeyFlags} from '../../stake/flags.js'
import {apiClient, configuredProvider, mainKeySession, readMainKey} from '../../stake/main-key.js'
import {BaseCommand} from '../../ui/base-command.js'
import {canPrompt} from '../../ui/interactive.js'
import {getPassphrase} from '../../ui/passphrase.js'

export default class BenchmarkRun extends BaseCommand {
  static override summary = 'Measure this machine (CPU, memory, storage, network, GPU) against a fresh marketplace challenge'
  static override description =
    'Fetches a challenge, runs the seeded workload whose digest the marketplace re-computes, measures the machine for ' +
    'real, and with --submit sends the signed report. Signs with the agent key (permission `benchmark`), or with the ' +
    'main key when --main-key-file is given.'

  static override examples = [
    '<%= config.bin %> benchmark run',
    '<%= config.bin %> benchmark run --type cpu --type memory --duration 10s',
    '<%= config.bin %> benchmark run --submit --storage-dir /var/lib/vz',
  ]

  static override flags = {
    ...mainKeyFlags,
    type: Flags.option({description: 'what to measure (repeat for several; default: all)', options: BENCHMARK_TYPES, multiple: true})(),
    submit: Flags.boolean({description: 'submit the signed report to the marketplace'}),
    duration: Flags.string({description: 'how long each measurement runs, like 10s or 500ms (default: 3s, or 250ms with --quick)'}),
    quick: Flags.boolean({description: 'small arrays and files and 250 ms measurements: a first look, not a report worth comparing'}),
    'storage-dir': Flags.string({description: 'directory on the storage to measure (default: the agent state_dir)', env: 'OUTPOST_BENCHMARK_STORAGE_DIR'}),
  }

  async run(): Promise<BenchmarkOutcome> {
    const {flags} = await this.parse(BenchmarkRun)
    const loaded = this.loadConfig(flags.config)
    const passphrase = () => getPassphrase({file: flags['passphrase-file']})
    const durationMs = flags.duration === undefined ? (flags.quick ? 250 : 3000) : parseDuration(flags.duration, '--duration')
    const session = flags['main-key-file']
      ? mainKeySession(loaded, await readMainKey({file: flags['main-key-file'], passphrase}, 'a benchmark with --main-key-file'))
      : {client: apiClient(loaded, await readKeyFile(loaded.paths.keyFile, {passphrase})), providerPubkey: configuredProvider(loaded)}
    const plan = planBenchmark(session, {
      types: flags.type ?? BENCHMARK_TYPES,
      durationMs: Math.max(1, durationMs),
      quick: flags.quick,
      storageDir: flags['storage-dir'] ?? loaded.paths.stateDir,
      submit: flags.submit,
      nvidiaSmi: loaded.config.gpu.nvidia_smi,
    })
    await runSteps(plan.steps, this.jsonEnabled() ? 'silent' : canPrompt() ? 'tasks' : 'lines', (line) => this.log(line))
    const outcome = plan.outcome()
    this.log('')
    this.log(renderTable(['measure', 'value', 'how'], resultRows(outcome.results)))
    this.log('')
    this.log(outcome.submitted ? `report submitted for challenge ${outcome.challenge_id}` : 'not submitted: run with --submit to send the signed report')
    return outcome
  }
}
