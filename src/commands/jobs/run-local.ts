import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {duration} from '../../cli/flags.js'
import {ExitCode, UserError} from '../../core/errors.js'
import {JOB_KINDS} from '../../core/api/job-kinds.js'
import {exampleJob, fileJob, LOCAL_EXAMPLES, runLocal, type RunLocalResult} from '../../jobs/run-local.js'
import {progressMode} from '../../ui/tasks.js'

export default class JobsRunLocal extends BaseCommand {
  static override summary = 'Run one job through the configured executor, with no marketplace, to check a setup'
  static override description =
    'The executor is the one [jobs] names for the job\'s kind (also for a kind not served yet). Shows the program ' +
    "digest, the executor, its time against this machine's estimate, and the output's digest, checked for its kind's " +
    'shape. The run teaches the agent\'s speed book (in its state dir) like a leased job would. Nothing is sent anywhere.'

  static override examples = [
    '<%= config.bin %> jobs run-local --example multiplier',
    '<%= config.bin %> jobs run-local --example ghz --json',
    '<%= config.bin %> jobs run-local circuit.qasm input.json --output counts.json',
    '<%= config.bin %> jobs run-local program.json input.bin --kind container --timeout 5m',
  ]

  static override args = {
    program: Args.string({description: 'file holding the program bytes (§12: a snarkjs-groth16-v1 JSON, OpenQASM 2.0, or {image, command})'}),
    input: Args.string({description: 'file holding the input bytes'}),
  }

  static override flags = {
    example: Flags.option({description: 'a built-in example instead of files', options: LOCAL_EXAMPLES})(),
    kind: Flags.option({description: 'the job kind (default: told from the program)', options: JOB_KINDS})(),
    timeout: duration({description: 'stop the run after this long', default: '10m'}),
    output: Flags.string({description: 'write the output bytes to this file'}),
    cpus: Flags.integer({description: 'CPU cores the job may use (container, slurm)', default: 1, min: 1}),
    'memory-mb': Flags.integer({description: 'memory the job may use, MiB (container, slurm)', default: 1024, min: 16}),
  }

  async run(): Promise<RunLocalResult> {
    const {args, flags} = await this.parse(JobsRunLocal)
    if (flags.example && (args.program || args.input)) {
      throw new UserError('give --example or a program and an input, not both', {code: 'usage', exit: ExitCode.usage, suggestion: 'drop the files, or drop --example'})
    }
    if (!flags.example && (!args.program || !args.input)) {
      throw new UserError('which job?', {code: 'usage', exit: ExitCode.usage, suggestion: `pass a program file and an input file, or --example ${LOCAL_EXAMPLES.join('|')}`})
    }
    const local = flags.example ? exampleJob(flags.example) : fileJob(args.program ?? '', args.input ?? '', flags.kind)
    if (flags.example && flags.kind && flags.kind !== local.kind) {
      throw new UserError(`the ${flags.example} example is a ${local.kind} job, not ${flags.kind}`, {code: 'usage', exit: ExitCode.usage, suggestion: `drop --kind or pass --kind ${local.kind}`})
    }
    const loaded = this.loadConfig(flags.config)
    const interrupted = new AbortController()
    const interrupt = () => interrupted.abort(new Error('interrupted'))
    process.once('SIGINT', interrupt)
    try {
      this.log(`${local.kind} job: ${local.source}`)
      const result = await runLocal(
        {loaded, local, timeoutMs: flags.timeout, signal: interrupted.signal, outputFile: flags.output, resources: {cpu_cores: flags.cpus, memory_mb: flags['memory-mb'], gpu_count: 0}},
        {mode: progressMode(this.jsonEnabled()), log: (line) => this.log(line)},
      )
      this.log(`program   ${result.program.digest} (${result.program.size_bytes} bytes)`)
      this.log(`input     ${result.input.digest} (${result.input.size_bytes} bytes)`)
      this.log(`executor  ${result.executor}${result.served ? '' : ` (not served: add ${result.kind} to [jobs] kinds and set enabled = true)`}`)
      const estimate = result.estimate ? `, estimate ${result.estimate.seconds.toFixed(2)} s (× ${result.estimate_ratio ?? '?'})` : ', no estimate yet'
      this.log(`time      ${(result.executor_ms / 1000).toFixed(2)} s${estimate}`)
      this.log(`output    ${result.output.digest} (${result.output.size_bytes} bytes)${result.output_file ? ` written to ${result.output_file}` : ''}`)
      this.log(`check     ${result.check}`)
      this.log(`attested  ${result.attestation ? `TPM quote verified, PCR digest ${result.attestation.pcr_digest}` : 'no ([attestation] enabled = false)'}`)
      return result
    } finally {
      process.off('SIGINT', interrupt)
    }
  }
}
