import {z} from 'zod'

import {JOB_KINDS, type JobKind} from '../api/job-kinds.js'

const JobKindSchema = z.enum(JOB_KINDS)
import {isAmount} from '../decimal.js'
import {JobBiddingSection} from './job-bidding.js'

/**
 * The `[jobs]` section of outpost.toml (a fragment for src/core/config/schema.ts): which §12 job kinds the agent
 * serves, how many at once, and which executor runs each kind, with the executors' own sections.
 */

/** The programs that run jobs (src/executors/ has one folder each). */
export const EXECUTOR_TYPES = ['snarkjs', 'qasm-simulator', 'docker', 'slurm', 'script'] as const
export type ExecutorType = (typeof EXECUTOR_TYPES)[number]

const seconds = (fallback: number, min = 1, max = 86_400) => z.number().int().min(min).max(max).default(fallback)

/** The kinds each executor can run. */
export const EXECUTOR_KINDS: Record<ExecutorType, readonly JobKind[]> = {
  snarkjs: ['zk_proof'],
  'qasm-simulator': ['quantum_circuit'],
  docker: ['container'],
  script: JOB_KINDS,
  slurm: JOB_KINDS,
}

export const QasmSimulatorSection = z.strictObject({
  max_width: z.number().int().min(1).max(20).default(16).describe('Widest circuit simulated, in qubits; wider jobs are failed as retryable (about 17 s for depth 20 at 16 qubits here, 5× per 2 more)'),
  max_shots: z.number().int().min(1).max(100_000_000).default(1_000_000).describe('Most shots of one job'),
  max_gates: z.number().int().min(1).max(10_000_000).default(100_000).describe('Most gates of one circuit, after register broadcast'),
  heap_mb: z.number().int().min(256).max(65_536).default(2048).describe('Heap of each simulator worker thread, MiB'),
})

export const DockerExecutorSection = z.strictObject({
  socket: z.string().min(1).default('/var/run/docker.sock').describe('Unix socket of the Docker Engine API'),
  request_timeout_seconds: seconds(30, 1, 600).describe('Timeout of one Engine API call (waiting for the container is bounded by the deadline instead)'),
  allowed_images: z.array(z.string().min(1)).optional().describe('Images that container jobs may name (exact references); default: any image on the engine (outpost never pulls)'),
  pids_limit: z.number().int().min(16).max(1_000_000).default(1024).describe('Most processes in one job container'),
})

export const ScriptExecutorSection = z.strictObject({
  command: z.string().min(1).describe('Executable run as `<command> run` with the job as JSON on stdin; relative to this config file'),
  kill_grace_seconds: seconds(5, 0, 300).describe('Time between SIGTERM and SIGKILL when a job is stopped'),
})

export const SlurmExecutorSection = z.strictObject({
  command: z.string().min(1).describe('Executable the batch job runs as `<command> run` (the script executor\'s contract); it must exist on the compute nodes'),
  work_dir: z.string().min(1).describe('Directory shared by this host and the compute nodes, for each job\'s files'),
  partition: z.string().min(1).optional().describe('Partition (sbatch --partition)'),
  account: z.string().min(1).optional().describe('Account (sbatch --account)'),
  slurm_conf: z.string().min(1).optional().describe('SLURM_CONF for the SLURM commands (default: their own)'),
  poll_interval_seconds: seconds(2, 1, 300).describe('Interval between squeue checks of a running job'),
  command_timeout_seconds: seconds(30, 1, 600).describe('Timeout of one sbatch, squeue or scancel call'),
})

const ExecutorChoice = z.strictObject({
  zk_proof: z.enum(EXECUTOR_TYPES).default('snarkjs').describe('Executor of zk_proof jobs'),
  quantum_circuit: z.enum(EXECUTOR_TYPES).default('qasm-simulator').describe('Executor of quantum_circuit jobs'),
  container: z.enum(EXECUTOR_TYPES).default('docker').describe('Executor of container jobs'),
})

const amount = z.string().refine(isAmount, 'expected a decimal string with at most 6 fractional digits, like "0.25"')

/** The least reward a job of each kind must pay to be leased (a price floor); a kind not named takes any reward. */
const MinimumReward = z.strictObject({
  zk_proof: amount.optional().describe('Least reward of a zk_proof job, in tokens'),
  quantum_circuit: amount.optional().describe('Least reward of a quantum_circuit job, in tokens'),
  container: amount.optional().describe('Least reward of a container job, in tokens'),
})

export const JobsSection = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Serve job markets (PROTOCOL §12): lease jobs, run them, return signed results'),
    kinds: z.array(JobKindSchema).min(1).default(['zk_proof', 'quantum_circuit']).describe('Job kinds served'),
    max_concurrent: z.number().int().min(1).max(64).default(1).describe('Jobs run at once'),
    min_reward: MinimumReward.default({}).describe('Price floor per kind: jobs paying less are not leased'),
    executor: ExecutorChoice.default({zk_proof: 'snarkjs', quantum_circuit: 'qasm-simulator', container: 'docker'}).describe('The executor of each kind'),
    qasm_simulator: QasmSimulatorSection.default({max_width: 16, max_shots: 1_000_000, max_gates: 100_000, heap_mb: 2048}).describe('The qasm-simulator executor'),
    docker: DockerExecutorSection.default({socket: '/var/run/docker.sock', request_timeout_seconds: 30, pids_limit: 1024}).describe('The docker executor'),
    script: ScriptExecutorSection.optional().describe('The script executor (an executor = "script")'),
    slurm: SlurmExecutorSection.optional().describe('The slurm executor (an executor = "slurm")'),
    bidding: JobBiddingSection.optional().describe('Sealed-bid auctions for jobs (PROTOCOL §13): the cost model, filters and strategy; without it, auction jobs are not bid on'),
  })
  .superRefine((jobs, context) => {
    for (const kind of new Set(jobs.kinds)) {
      const type = jobs.executor[kind]
      if (!EXECUTOR_KINDS[type].includes(kind)) {
        context.addIssue({code: 'custom', path: ['executor', kind], message: `executor "${type}" does not run ${kind} jobs (it runs ${EXECUTOR_KINDS[type].join(', ')})`})
      }
      if ((type === 'script' || type === 'slurm') && jobs[type] === undefined) {
        context.addIssue({code: 'custom', path: [type], message: `[jobs.${type}] is required when a kind's executor is "${type}"`})
      }
    }
  })
export type JobsSettings = z.output<typeof JobsSection>
