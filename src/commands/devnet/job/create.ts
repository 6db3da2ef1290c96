import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../../cli/base-command.js'
import {duration} from '../../../cli/flags.js'
import type {JobDetail} from '../../../core/api/job-schemas.js'
import {JOB_KINDS} from '../../../core/api/job-kinds.js'
import {isAmount} from '../../../core/decimal.js'
import {UserError} from '../../../core/errors.js'
import {JOB_EXAMPLES, submitJob} from '../../../devnet/jobs.js'
import {devnetTarget, renterFlags} from '../../../devnet/flags.js'
import {onDevnet, renterClient} from '../../../devnet/renter.js'

function amount(flag: string, value: string): string {
  if (!isAmount(value)) throw new UserError(`${flag}: "${value}" is not a decimal amount`, {code: 'usage', exit: 2, suggestion: 'write a decimal with at most 6 digits after the point, like 0.5'})
  return value
}

const seconds = (ms: number) => Math.max(1, Math.round(ms / 1000))

function commandArray(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = undefined
  }
  if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((item) => typeof item === 'string')) {
    throw new UserError(`--command: ${text} is not a JSON array of strings`, {code: 'usage', exit: 2, suggestion: 'write it like \'["sh", "-c", "wc -c < /input > /output"]\''})
  }
  return parsed
}

export default class DevnetJobCreate extends BaseCommand {
  static override summary = 'Open a job (a zk proof, a quantum circuit run, a container run) as the devnet renter'
  static override description =
    'Uploads the program (by digest: the same bytes are stored once) and opens the job, signed by the renter key in the ' +
    'devnet data directory. Built-in examples need nothing else: --example multiplier (a Groth16 proof of the circuit in ' +
    'templates/jobs/multiplier) and --example ghz (the 5-qubit GHZ circuit in templates/jobs/ghz). An agent leases the job, runs it and returns a ' +
    'signed result the devnet verifies; follow it with `outpost devnet job show`.'

  static override examples = [
    '<%= config.bin %> devnet job create --example multiplier',
    '<%= config.bin %> devnet job create --example ghz --shots 4096 --reward 0.5',
    '<%= config.bin %> devnet job create --kind container --image busybox --command \'["sh", "-c", "wc -c < /input > /output"]\' --input data.bin',
    '<%= config.bin %> devnet job create --example multiplier --auction --max-fee 5 --bid-seconds 30 --reveal-seconds 30',
  ]

  static override flags = {
    ...renterFlags,
    kind: Flags.option({description: 'what to run (implied by --example)', options: JOB_KINDS})(),
    example: Flags.option({description: 'a built-in job: multiplier (zk_proof) or ghz (quantum_circuit)', options: JOB_EXAMPLES})(),
    program: Flags.string({description: 'file holding the program bytes (snarkjs-groth16-v1 JSON, OpenQASM 2.0, or container JSON)'}),
    input: Flags.string({description: 'file holding the input bytes'}),
    image: Flags.string({description: 'container: the image to run (instead of --program)'}),
    command: Flags.string({description: 'container: the command, a JSON array of strings'}),
    shots: Flags.integer({description: 'quantum_circuit without --input: how many shots', default: 1024, min: 1, max: 1_000_000}),
    reward: Flags.string({description: 'tokens paid for an accepted result (fixed reward)', default: '1'}),
    collateral: Flags.string({description: 'tokens the provider locks from its stake while it holds the job', default: '1'}),
    deadline: duration({description: 'when the job must be done, from now: 30s, 10m, 2h', default: '10m'}),
    lease: duration({description: 'how long a lease lasts before the agent renews it', default: '60s'}),
    'max-attempts': Flags.integer({description: 'leases the job may have in all', default: 3, min: 1, max: 10}),
    'cpu-cores': Flags.integer({description: 'CPU cores the job needs', default: 1, min: 1}),
    'memory-mb': Flags.integer({description: 'memory the job needs, MiB', default: 512, min: 1}),
    'gpu-count': Flags.integer({description: 'GPUs the job needs', default: 0, min: 0}),
    'gpu-model': Flags.string({description: 'GPU model the job needs, like h100'}),
    'requires-attestation': Flags.boolean({description: 'only agents with an enrolled TPM attestation key may take it (§14)'}),
    'expect-public-signals': Flags.string({description: 'zk_proof: the public signals the proof must carry, comma-separated'}),
    auction: Flags.boolean({description: 'sell the job by sealed-bid auction (§13): the lowest fee wins and is paid the second lowest'}),
    'max-fee': Flags.string({description: 'with --auction: the most the renter pays'}),
    'bid-seconds': Flags.integer({description: 'with --auction: how long bidding lasts', default: 30, min: 1, max: 86_400}),
    'reveal-seconds': Flags.integer({description: 'with --auction: how long reveals last after bidding', default: 30, min: 1, max: 86_400}),
  }

  async run(): Promise<JobDetail> {
    const {flags} = await this.parse(DevnetJobCreate)
    if (flags.auction && !flags['max-fee']) throw new UserError('an auction needs the most the renter pays', {code: 'usage', exit: 2, suggestion: 'pass --max-fee AMOUNT'})
    if (!flags.auction && flags['max-fee']) throw new UserError('--max-fee is for auctions', {code: 'usage', exit: 2, suggestion: 'add --auction, or pass --reward for a fixed reward'})
    const target = devnetTarget(flags, this.configDirectory)
    const client = await renterClient(target)
    const job = await onDevnet(target, () => submitJob(client, {
      kind: flags.kind,
      example: flags.example,
      programFile: flags.program,
      inputFile: flags.input,
      image: flags.image,
      command: commandArray(flags.command),
      shots: flags.shots,
      reward: flags.auction ? {mode: 'auction', max_fee: amount('--max-fee', flags['max-fee'] ?? '')} : {mode: 'fixed', amount: amount('--reward', flags.reward)},
      collateral: amount('--collateral', flags.collateral),
      deadlineSeconds: seconds(flags.deadline),
      leaseSeconds: seconds(flags.lease),
      maxAttempts: flags['max-attempts'],
      resources: {cpu_cores: flags['cpu-cores'], memory_mb: flags['memory-mb'], gpu_count: flags['gpu-count'], ...(flags['gpu-model'] ? {gpu_model: flags['gpu-model']} : {})},
      requiresAttestation: flags['requires-attestation'],
      expectPublicSignals: flags['expect-public-signals']?.split(',').map((signal) => signal.trim()),
      ...(flags.auction ? {auctionPhases: {bidSeconds: flags['bid-seconds'], revealSeconds: flags['reveal-seconds']}} : {}),
    }))
    this.log(`job ${job.job_id}: ${job.kind}, ${job.status}, deadline ${new Date(job.deadline).toISOString()}`)
    if (job.reward.mode === 'auction') this.log(`  auction: bids until ${new Date(job.bid_closes_at ?? 0).toISOString()}, reveals until ${new Date(job.reveal_closes_at ?? 0).toISOString()}`)
    this.log(`follow it with: outpost devnet job show ${job.job_id}`)
    return job
  }
}
