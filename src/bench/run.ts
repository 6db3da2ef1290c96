import {ApiError} from '../core/api/api-error.js'
import {requestChallenge, submitReport, type BenchmarkChallenge, type BenchmarkReport} from '../core/api/benchmarks.js'
import type {ProviderSession} from '../core/api/session.js'
import {computeWorkDigest, WORKLOAD_ITERATIONS} from '../core/benchmark-workload.js'
import {BugError, UserError} from '../core/errors.js'
import type {Task} from '../ui/tasks.js'
import {allCores, measureCpu, PRIME_LIMIT} from './cpu.js'
import {benchmarkGpus, type GpuRun} from './gpu.js'
import {describeMachine, type MachineDescription} from './machine.js'
import {measureMemory, measureSequential, type MemoryRun, type SequentialRun} from './memory.js'
import {measureNetwork, type NetworkRun} from './network.js'
import {measureStorage, type StorageRun} from './storage.js'

export const BENCHMARK_TYPES = ['cpu', 'memory', 'storage', 'network', 'gpu'] as const
export type BenchmarkType = (typeof BENCHMARK_TYPES)[number]

export interface BenchmarkSettings {
  types: readonly BenchmarkType[]
  /** How long each measurement runs. */
  durationMs: number
  /** Small arrays and files: for tests and a first look, not for a report worth comparing. */
  quick: boolean
  /** A directory on the storage renters' machines use. */
  storageDir: string
  submit: boolean
  /** `[gpu] nvidia_smi`. */
  nvidiaSmi?: string
}

export interface CpuResults {
  kernel: string
  single_core_events_per_second: number
  all_cores_events_per_second: number
  threads: number
}

export interface BenchmarkResults {
  work: {iterations: number; seconds: number}
  quick: boolean
  duration_ms: number
  cpu?: CpuResults
  memory?: MemoryRun & SequentialRun
  storage?: StorageRun
  network?: NetworkRun
  gpu?: GpuRun
}

export interface BenchmarkOutcome {
  provider_pubkey: string
  challenge_id: string
  work_digest: string
  machine: MachineDescription
  results: BenchmarkResults
  submitted: boolean
  report?: BenchmarkReport
}

const MEMORY_ELEMENTS = {full: 2 ** 25, quick: 2 ** 22}
/** sysbench memory's block for the full run: its figures and ours read the same pattern. */
const SEQUENTIAL_BLOCK_MIB = {full: 256, quick: 32}
const STORAGE_FILE_MIB = {full: 256, quick: 16}

const round = (value: number, digits = 1) => Number(value.toFixed(digits))

/** A refused report, said in words that tell what to do. */
function submissionError(error: unknown): unknown {
  if (!(error instanceof ApiError)) return error
  if (error.apiCode === 'challenge_expired' || error.apiCode === 'challenge_used') {
    return new UserError(`the marketplace refused the report: ${error.message}`, {
      code: error.apiCode,
      suggestion: 'run `outpost benchmark run --submit` again: each run asks for a fresh challenge, valid 15 minutes, once',
      cause: error,
    })
  }
  if (error.apiCode === 'invalid_body' && JSON.stringify(error.details ?? []).includes('work_digest')) {
    return new BugError(`the marketplace computed another work digest for this challenge: ${error.message}`, {cause: error})
  }
  return error
}

/** What the benchmark's tasks find, in order: each task adds its part. */
export interface BenchmarkRun {
  challenge?: BenchmarkChallenge
  workDigest?: string
  results: BenchmarkResults
  report?: BenchmarkReport
}

export interface BenchmarkPlan {
  tasks: Task<BenchmarkRun>[]
  start: BenchmarkRun
  /** The outcome, read from the run once the tasks are done. */
  outcome(run: BenchmarkRun): BenchmarkOutcome
}

/**
 * The benchmark as tasks: a challenge first, so the seeded workload (and the report) can only be made after it was
 * issued; then each measurement asked for; then, with --submit, the report. The session signs with the agent key
 * (permission `benchmark`) or the provider main key.
 */
export function planBenchmark(session: ProviderSession, settings: BenchmarkSettings): BenchmarkPlan {
  const wanted = new Set(settings.types)
  const size = settings.quick ? 'quick' : 'full'
  const threads = allCores()

  const tasks: Task<BenchmarkRun>[] = [
    {
      title: 'Fetch a challenge from the marketplace',
      run: async () => {
        const challenge = await requestChallenge(session.client, session.providerPubkey)
        return {add: {challenge}, note: `${challenge.challenge_id}, valid until ${new Date(challenge.expires_at).toISOString()}`}
      },
    },
    {
      title: 'Run the seeded workload (work digest)',
      run: async ({challenge, results}) => {
        if (!challenge) throw new BugError('the workload ran before the challenge was fetched')
        const start = performance.now()
        const workDigest = computeWorkDigest(challenge.seed)
        const seconds = round((performance.now() - start) / 1000, 3)
        return {add: {workDigest, results: {...results, work: {...results.work, seconds}}}, note: `${workDigest.slice(0, 16)}… in ${seconds} s`}
      },
    },
  ]
  if (wanted.has('cpu')) {
    tasks.push({
      title: `CPU: one core, then all ${threads}`,
      run: async ({results}) => {
        const single = await measureCpu({threads: 1, durationMs: settings.durationMs})
        const all = await measureCpu({threads, durationMs: settings.durationMs})
        const cpu: CpuResults = {
          kernel: `primes below ${PRIME_LIMIT} by trial division (the sysbench cpu event)`,
          single_core_events_per_second: round(single.events_per_second),
          all_cores_events_per_second: round(all.events_per_second),
          threads,
        }
        return {add: {results: {...results, cpu}}, note: `${cpu.single_core_events_per_second} events/s on one core, ${cpu.all_cores_events_per_second} on ${threads}`}
      },
    })
  }
  if (wanted.has('memory')) {
    tasks.push({
      title: 'Memory bandwidth (sequential read and write, STREAM triad)',
      run: async ({results}) => {
        const run = measureMemory({elements: MEMORY_ELEMENTS[size], durationMs: settings.durationMs})
        const sequential = measureSequential({blockMib: SEQUENTIAL_BLOCK_MIB[size], durationMs: settings.durationMs})
        const memory = {
          ...run,
          triad_mib_per_second: round(run.triad_mib_per_second),
          triad_mean_mib_per_second: round(run.triad_mean_mib_per_second),
          read_mib_per_second: round(sequential.read_mib_per_second),
          write_mib_per_second: round(sequential.write_mib_per_second),
          block_mib: sequential.block_mib,
        }
        return {add: {results: {...results, memory}}, note: `read ${memory.read_mib_per_second}, write ${memory.write_mib_per_second}, triad ${memory.triad_mib_per_second} MiB/s`}
      },
    })
  }
  if (wanted.has('storage')) {
    tasks.push({
      title: `Storage in ${settings.storageDir}`,
      run: async ({results}) => {
        const run = measureStorage({dir: settings.storageDir, fileMib: STORAGE_FILE_MIB[size], durationMs: settings.durationMs})
        const storage = {
          ...run,
          seq_write_mib_per_second: round(run.seq_write_mib_per_second),
          seq_read_mib_per_second: round(run.seq_read_mib_per_second),
          rand_read_iops: Math.round(run.rand_read_iops),
          rand_write_iops: Math.round(run.rand_write_iops),
        }
        return {
          add: {results: {...results, storage}},
          note: `${storage.rand_read_iops} / ${storage.rand_write_iops} IOPS, ${storage.seq_read_mib_per_second} / ${storage.seq_write_mib_per_second} MiB/s${storage.direct_io ? '' : ' (page cache not bypassed)'}`,
        }
      },
    })
  }
  if (wanted.has('network')) {
    tasks.push({
      title: `Network to ${session.client.endpoint}`,
      run: async ({results}) => {
        const run = await measureNetwork({client: session.client, providerPubkey: session.providerPubkey, durationMs: settings.durationMs})
        const network = {
          ...run,
          latency_ms_median: round(run.latency_ms_median, 2),
          latency_ms_p90: round(run.latency_ms_p90, 2),
          upload_mib_per_second: run.upload_mib_per_second === null ? null : round(run.upload_mib_per_second),
          download_mib_per_second: run.download_mib_per_second === null ? null : round(run.download_mib_per_second),
        }
        return {add: {results: {...results, network}}, note: `${network.latency_ms_median} ms, upload ${network.upload_mib_per_second ?? '-'} MiB/s, download ${network.download_mib_per_second ?? '-'} MiB/s`}
      },
    })
  }
  if (wanted.has('gpu')) {
    tasks.push({
      title: 'GPU: what nvidia-smi reports, and copy rate and matrix multiply where nvcc can build the CUDA program',
      run: async ({results}) => {
        const gpu = await benchmarkGpus({nvidiaSmi: settings.nvidiaSmi, quick: settings.quick})
        const measured = gpu.measured?.map((device) => `GPU ${device.index}: ${device.copy_gib_per_second} GiB/s copy, ${device.matmul_gflops} GFLOP/s`)
        return {add: {results: {...results, gpu}}, note: [gpu.gpus.map((device) => device.name).join(', '), ...(measured ?? []), gpu.note].filter(Boolean).join('; ')}
      },
    })
  }
  if (settings.submit) {
    tasks.push({
      title: 'Submit the signed report',
      run: async ({challenge, workDigest, results}) => {
        if (!challenge || !workDigest) throw new BugError('the report was submitted before the workload ran')
        let report: BenchmarkReport
        try {
          report = await submitReport(session.client, session.providerPubkey, {
            challenge_id: challenge.challenge_id,
            machine: {...describeMachine()},
            results: {...results},
            work_digest: workDigest,
          })
        } catch (error) {
          throw submissionError(error)
        }
        return {add: {report}, note: `accepted${report.report_id ? ` as ${report.report_id}` : ''}`}
      },
    })
  }

  return {
    tasks,
    start: {results: {work: {iterations: WORKLOAD_ITERATIONS, seconds: 0}, quick: settings.quick, duration_ms: settings.durationMs}},
    outcome: ({challenge, workDigest, results, report}) => {
      if (!challenge || !workDigest) throw new BugError('the benchmark outcome was read before it ran')
      return {
        provider_pubkey: session.providerPubkey,
        challenge_id: challenge.challenge_id,
        work_digest: workDigest,
        machine: describeMachine(),
        results,
        submitted: report !== undefined,
        ...(report ? {report} : {}),
      }
    },
  }
}

/** The results as table rows: measure, value, how it was measured. */
export function resultRows(results: BenchmarkResults): string[][] {
  const rows: string[][] = [['work digest', `${results.work.seconds} s`, `${results.work.iterations} chained SHA-256 from the challenge seed`]]
  const {cpu, memory, storage, network, gpu} = results
  if (cpu) {
    rows.push(['CPU, one core', `${cpu.single_core_events_per_second} events/s`, cpu.kernel])
    rows.push([`CPU, ${cpu.threads} cores`, `${cpu.all_cores_events_per_second} events/s`, `${cpu.threads} worker threads at once`])
  }
  if (memory) {
    rows.push(['memory seq read', `${memory.read_mib_per_second} MiB/s`, `128-bit loads over a ${memory.block_mib} MiB block, one thread`])
    rows.push(['memory seq write', `${memory.write_mib_per_second} MiB/s`, `128-bit stores over a ${memory.block_mib} MiB block, one thread`])
    rows.push(['memory triad', `${memory.triad_mib_per_second} MiB/s`, `best of ${memory.passes} passes (mean ${memory.triad_mean_mib_per_second}), 3 × ${memory.array_mib} MiB arrays`])
  }
  if (storage) {
    const how = storage.direct_io ? `O_DIRECT, ${storage.file_mib} MiB file` : (storage.note ?? 'buffered')
    rows.push(['storage seq write', `${storage.seq_write_mib_per_second} MiB/s`, `1 MiB blocks, ${how}`])
    rows.push(['storage seq read', `${storage.seq_read_mib_per_second} MiB/s`, '1 MiB blocks'])
    rows.push(['storage rand read', `${storage.rand_read_iops} IOPS`, '4 KiB, queue depth 1'])
    rows.push(['storage rand write', `${storage.rand_write_iops} IOPS`, '4 KiB, queue depth 1'])
  }
  if (network) {
    rows.push(['network latency', `${network.latency_ms_median} ms`, `median of ${network.samples} round trips (p90 ${network.latency_ms_p90} ms)`])
    const how = network.throughput_method === 'bulk' ? 'the marketplace\'s bulk routes, 8 MiB bodies' : '1 MiB signed bodies'
    rows.push(['network upload', network.upload_mib_per_second === null ? '-' : `${network.upload_mib_per_second} MiB/s`, network.note ?? how])
    rows.push(['network download', network.download_mib_per_second === null ? '-' : `${network.download_mib_per_second} MiB/s`, network.note ?? how])
  }
  if (gpu) {
    if (gpu.gpus.length === 0) rows.push(['GPU', 'none', gpu.note ?? ''])
    for (const device of gpu.gpus) {
      rows.push([`GPU ${device.index}`, device.name, `${device.memory_mib} MiB, driver ${device.driver_version}${device.compute_capability ? `, compute capability ${device.compute_capability}` : ''} (nvidia-smi)`])
    }
    for (const device of gpu.measured ?? []) {
      rows.push([`GPU ${device.index} copy`, `${device.copy_gib_per_second} GiB/s`, `device-to-device cudaMemcpy of ${Math.round(device.copy_bytes / device.repeats / 1024 ** 2)} MiB × ${device.repeats}`])
      rows.push([`GPU ${device.index} FP32 matmul`, `${device.matmul_gflops} GFLOP/s`, `${device.matmul_n}² tiled kernel × ${device.repeats}, max relative error ${device.matmul_max_relative_error}`])
    }
    if (gpu.gpus.length > 0 && gpu.note) rows.push(['GPU', 'not measured', gpu.note])
  }
  return rows
}
