import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {duration, mainKeyFlags, marketplaceFlags} from '../../cli/flags.js'
import {agentKeySession, mainKeySession} from '../../core/api/session.js'
import {BENCHMARK_TYPES, planBenchmark, resultRows, type BenchmarkOutcome} from '../../bench/run.js'
import {renderTable} from '../../ui/table.js'
import {progressMode, runTasks} from '../../ui/tasks.js'

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
    ...marketplaceFlags,
    ...mainKeyFlags,
    type: Flags.option({description: 'what to measure (repeat for several; default: all)', options: BENCHMARK_TYPES, multiple: true})(),
    submit: Flags.boolean({description: 'submit the signed report to the marketplace'}),
    duration: duration({description: 'how long each measurement runs, like 10s or 500ms (default: 3s, or 250ms with --quick)'}),
    quick: Flags.boolean({description: 'small arrays and files and 250 ms measurements: a first look, not a report worth comparing'}),
    'storage-dir': Flags.string({description: 'directory on the storage to measure (default: the agent state_dir)', env: 'OUTPOST_BENCHMARK_STORAGE_DIR'}),
  }

  async run(): Promise<BenchmarkOutcome> {
    const {flags} = await this.parse(BenchmarkRun)
    const loaded = this.loadConfig(flags.config)
    const durationMs = flags.duration ?? (flags.quick ? 250 : 3000)
    const session = flags['main-key-file']
      ? mainKeySession(loaded, await this.mainKey(flags, 'a benchmark with --main-key-file'))
      : agentKeySession(loaded, await this.agentKey(flags))
    const plan = planBenchmark(session, {
      types: flags.type ?? BENCHMARK_TYPES,
      durationMs: Math.max(1, durationMs),
      quick: flags.quick,
      storageDir: flags['storage-dir'] ?? loaded.paths.stateDir,
      submit: flags.submit,
      nvidiaSmi: loaded.config.gpu.nvidia_smi,
    })
    const outcome = plan.outcome(await runTasks(plan.tasks, plan.start, progressMode(this.jsonEnabled()), (line) => this.log(line)))
    this.log('')
    this.log(renderTable(['measure', 'value', 'how'], resultRows(outcome.results)))
    this.log('')
    this.log(outcome.submitted ? `report submitted for challenge ${outcome.challenge_id}` : 'not submitted: run with --submit to send the signed report')
    return outcome
  }
}
