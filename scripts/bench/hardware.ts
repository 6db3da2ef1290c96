import {execFile} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {availableParallelism, tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'
import {z} from 'zod'

import {allCores, measureCpu} from '../../src/bench/cpu.js'
import {gpuInfos} from '../../src/bench/gpu.js'
import {describeInventory, readGpuInventory} from '../../src/gpu/inventory.js'
import {measureMemory, measureSequential} from '../../src/bench/memory.js'
import {measureNetwork} from '../../src/bench/network.js'
import {measureStorage, type StorageRun} from '../../src/bench/storage.js'
import {ApiClient} from '../../src/core/api/client.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {startDevnet} from '../../test/support/devnet.js'
import type {BenchRow, BenchSection} from './types.js'

/**
 * `outpost benchmark`'s own measurements next to the well-known tools, on the same machine in the same run:
 * sysbench cpu and memory, fio for storage, curl for the network to a devnet on loopback. Each row is our figure, with
 * the ratio ours / tool's (target: within ±20%). Nothing is tuned to match; where the two measure different things
 * the note says so. OUTPOST_BENCH_HARDWARE_SECONDS sets each measurement's length (default 3),
 * OUTPOST_BENCH_HARDWARE_ROUNDS how many turns each side takes (default 3), OUTPOST_BENCH_STORAGE_DIR the storage
 * measured (default: the OS temp dir).
 */

const run = promisify(execFile)
const SECONDS = Number(process.env.OUTPOST_BENCH_HARDWARE_SECONDS ?? 3)
/** Ours and the tool take turns, and each side's median is kept, so load from elsewhere on the machine hits both alike. */
const ROUNDS = Number(process.env.OUTPOST_BENCH_HARDWARE_ROUNDS ?? 3)
const DURATION_MS = SECONDS * 1000
const STORAGE_DIR = process.env.OUTPOST_BENCH_STORAGE_DIR ?? tmpdir()
const STORAGE_FILE_MIB = 256
const MEMORY_ELEMENTS = 2 ** 25
const MIB = 2 ** 20
const BULK_BYTES = 8 * MIB

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}

type Reference = {value: number; what: string} | {missing: string}

/** ROUNDS turns each, alternating who goes first; the medians of both sides. A missing tool is asked once. */
async function interleaved(ours: () => Promise<number> | number, reference: () => Promise<Reference>): Promise<{ours: number; reference: Reference}> {
  const mine: number[] = []
  const theirs: number[] = []
  let what = ''
  for (let round = 0; round < ROUNDS; round++) {
    const turn = async () => {
      const answer = await reference()
      if ('missing' in answer) return answer
      theirs.push(answer.value)
      what = answer.what
      return undefined
    }
    if (round % 2 === 1) {
      const missing = await turn()
      mine.push(await ours())
      if (missing) return {ours: median(mine), reference: missing}
    } else {
      mine.push(await ours())
      const missing = await turn()
      if (missing) return {ours: median(mine), reference: missing}
    }
  }
  return {ours: median(mine), reference: {value: median(theirs), what: `${what}, median of ${ROUNDS}`}}
}

/** A tool's output, or the reason it could not be run (never a crash). */
async function tool(command: string, args: string[]): Promise<{output: string} | {missing: string}> {
  try {
    const {stdout} = await run(command, args, {maxBuffer: 16 * MIB, timeout: (SECONDS * 4 + 60) * 1000})
    return {output: stdout}
  } catch (error) {
    const code = typeof error === 'object' && error !== null && 'code' in error ? String((error as {code: unknown}).code) : ''
    return {missing: code === 'ENOENT' ? `${command} is not installed (apt-get install -y ${command === 'curl' ? 'curl' : command})` : `${command} failed: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`}
  }
}

function row(group: string, name: string, value: number, unit: string, reference: Reference, caveat = ''): BenchRow {
  const rounded = Number(value.toFixed(value >= 100 ? 0 : 2))
  if ('missing' in reference) return {group, name, value: rounded, unit, note: `no reference: ${reference.missing}`}
  return {group, name, value: rounded, unit, ratio: value / reference.value, note: `vs ${reference.what} ${reference.value.toFixed(reference.value >= 100 ? 0 : 2)} ${unit}${caveat ? `; ${caveat}` : ''}`}
}

function sysbenchRate(output: string, pattern: RegExp): number {
  const match = pattern.exec(output)
  if (!match?.[1]) throw new Error(`sysbench printed no figure matching ${pattern}:\n${output}`)
  return Number(match[1])
}

async function sysbenchCpu(threads: number): Promise<Reference> {
  const result = await tool('sysbench', ['cpu', `--threads=${threads}`, `--time=${SECONDS}`, 'run'])
  if ('missing' in result) return result
  return {value: sysbenchRate(result.output, /events per second:\s+([\d.]+)/), what: `sysbench cpu --threads=${threads}`}
}

async function sysbenchMemory(operation: 'read' | 'write'): Promise<Reference> {
  const blockMib = (MEMORY_ELEMENTS * 8) / MIB
  const args = ['memory', '--threads=1', `--time=${SECONDS}`, `--memory-block-size=${blockMib}M`, '--memory-total-size=100000G', `--memory-oper=${operation}`, 'run']
  const result = await tool('sysbench', args)
  if ('missing' in result) return result
  return {value: sysbenchRate(result.output, /\(([\d.]+) MiB\/sec\)/), what: `sysbench memory ${operation} (${blockMib} MiB block)`}
}

interface FioJob {
  rw: 'write' | 'read' | 'randread' | 'randwrite'
  bs: string
}

/** fio with the access pattern of our measurement: psync engine, queue depth 1, O_DIRECT, same file size and time. */
async function fio(dir: string, job: FioJob): Promise<Reference> {
  const args = [
    '--name=outpost-reference',
    `--directory=${dir}`,
    `--size=${STORAGE_FILE_MIB}M`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    '--direct=1',
    '--ioengine=psync',
    '--iodepth=1',
    '--time_based',
    `--runtime=${SECONDS}`,
    ...(job.rw === 'write' ? ['--end_fsync=1'] : []),
    '--output-format=json',
  ]
  const result = await tool('fio', args)
  if ('missing' in result) return result
  const report = JSON.parse(result.output) as {jobs: {read: {iops: number; bw_bytes: number}; write: {iops: number; bw_bytes: number}}[]}
  const side = job.rw.includes('read') ? report.jobs[0]?.read : report.jobs[0]?.write
  if (!side) throw new Error('fio printed no job')
  const random = job.rw.startsWith('rand')
  return {value: random ? side.iops : side.bw_bytes / MIB, what: `fio --rw=${job.rw} --bs=${job.bs} --direct=1 psync`}
}

/** curl's own timers, from fresh processes: a new connection each time, as curl can't keep one across runs. */
async function curlLatency(url: string, samples: number): Promise<Reference> {
  const times: number[] = []
  for (let index = 0; index < samples; index++) {
    const result = await tool('curl', ['-s', '-o', '/dev/null', '-w', '%{time_connect} %{time_total}', url])
    if ('missing' in result) return result
    const [connect, total] = result.output.trim().split(' ').map(Number)
    // The request's own round trip, without the TCP handshake our kept-alive connection doesn't pay.
    times.push(((total ?? 0) - (connect ?? 0)) * 1000)
  }
  return {value: median(times), what: 'curl time_total - time_connect, median'}
}

async function curlTransfer(args: string[], speed: 'speed_upload' | 'speed_download', samples: number, what: string): Promise<Reference> {
  const rates: number[] = []
  for (let index = 0; index < samples; index++) {
    const result = await tool('curl', ['-s', '-o', '/dev/null', '-w', `%{${speed}}`, ...args])
    if ('missing' in result) return result
    rates.push(Number(result.output.trim()) / MIB)
  }
  return {value: median(rates), what}
}

async function cpuRows(): Promise<BenchRow[]> {
  const threads = allCores()
  const caveat = 'the same event (primes below 10000 by trial division)'
  const single = await interleaved(async () => (await measureCpu({threads: 1, durationMs: DURATION_MS})).events_per_second, () => sysbenchCpu(1))
  const all = await interleaved(async () => (await measureCpu({threads, durationMs: DURATION_MS})).events_per_second, () => sysbenchCpu(threads))
  return [
    row('hardware', 'CPU, one core', single.ours, 'events/s', single.reference, caveat),
    row('hardware', `CPU, ${threads} cores`, all.ours, 'events/s', all.reference, caveat),
  ]
}

async function memoryRows(): Promise<BenchRow[]> {
  const blockMib = (MEMORY_ELEMENTS * 8) / MIB
  const same = `the same pattern: sequential passes over a ${blockMib} MiB block, one thread, mean rate`
  const read = await interleaved(() => measureSequential({blockMib, durationMs: DURATION_MS}).read_mib_per_second, () => sysbenchMemory('read'))
  const write = await interleaved(() => measureSequential({blockMib, durationMs: DURATION_MS}).write_mib_per_second, () => sysbenchMemory('write'))
  const triad = measureMemory({elements: MEMORY_ELEMENTS, durationMs: DURATION_MS})
  return [
    row('hardware', 'memory sequential read', read.ours, 'MiB/s', read.reference, same),
    row('hardware', 'memory sequential write', write.ours, 'MiB/s', write.reference, same),
    {
      group: 'hardware',
      name: 'memory STREAM triad, best pass',
      value: Math.round(triad.triad_mib_per_second),
      unit: 'MiB/s',
      note: `STREAM's kernel and reporting (best of ${triad.passes} passes, mean ${Math.round(triad.triad_mean_mib_per_second)}); no STREAM binary in Debian to set beside it`,
    },
  ]
}

const FIO_JOBS: {name: string; job: FioJob; figure: (run: StorageRun) => number; unit: string}[] = [
  {name: 'storage seq write 1 MiB', job: {rw: 'write', bs: '1M'}, figure: (run) => run.seq_write_mib_per_second, unit: 'MiB/s'},
  {name: 'storage seq read 1 MiB', job: {rw: 'read', bs: '1M'}, figure: (run) => run.seq_read_mib_per_second, unit: 'MiB/s'},
  {name: 'storage rand read 4 KiB QD1', job: {rw: 'randread', bs: '4k'}, figure: (run) => run.rand_read_iops, unit: 'IOPS'},
  {name: 'storage rand write 4 KiB QD1', job: {rw: 'randwrite', bs: '4k'}, figure: (run) => run.rand_write_iops, unit: 'IOPS'},
]

async function storageRows(): Promise<BenchRow[]> {
  const fioDir = mkdtempSync(join(STORAGE_DIR, '.outpost-fio-'))
  try {
    const runs: StorageRun[] = []
    const references = FIO_JOBS.map(() => [] as number[])
    const whats: string[] = []
    let missing: {missing: string} | undefined
    const fioRound = async () => {
      for (const [index, {job}] of FIO_JOBS.entries()) {
        const answer = await fio(fioDir, job)
        if ('missing' in answer) missing = answer
        else {
          references[index]?.push(answer.value)
          whats[index] = answer.what
        }
      }
    }
    for (let round = 0; round < ROUNDS; round++) {
      if (round % 2 === 1 && !missing) await fioRound()
      runs.push(measureStorage({dir: STORAGE_DIR, fileMib: STORAGE_FILE_MIB, durationMs: DURATION_MS}))
      if (round % 2 === 0 && !missing) await fioRound()
    }
    const how = runs[0]?.direct_io ? 'O_DIRECT' : `buffered: ${runs[0]?.note ?? ''}`
    return FIO_JOBS.map(({name, figure, unit}, index) =>
      row('hardware', `${name} (${how})`, median(runs.map(figure)), unit, missing ?? {value: median(references[index] ?? []), what: `${whats[index] ?? 'fio'}, median of ${ROUNDS}`}),
    )
  } finally {
    rmSync(fioDir, {recursive: true, force: true})
  }
}

/** A devnet on loopback with one registered provider, so the network figures have an endpoint to talk to. */
async function networkRows(): Promise<BenchRow[]> {
  const dataDir = mkdtempSync(join(tmpdir(), 'outpost-bench-devnet-'))
  // Its own process, as curl's server is: in this one it would share a thread with the client it answers.
  const server = await startDevnet({dataDir, process: true})
  try {
    const mainKey = generateKeyPair()
    const providerPubkey = toHex(mainKey.publicKey)
    const client = new ApiClient({endpoint: server.endpoint, key: mainKey})
    await client.post('/providers', {schema: z.unknown(), body: {name: 'bench', contact_email: 'bench@example.com'}})
    const ours = await measureNetwork({client, providerPubkey, durationMs: DURATION_MS})
    const bodyFile = join(dataDir, 'body.bin')
    writeFileSync(bodyFile, Buffer.alloc(BULK_BYTES, 0x5a))
    const api = `${server.endpoint}/api/v1`
    const latency = await curlLatency(`${api}/providers/${providerPubkey}/stake`, 20)
    const sameRoutes = 'the same bulk route and body size, curl from a fresh process each time (its handshake included)'
    const upload = await curlTransfer(['-H', 'content-type: application/octet-stream', '--data-binary', `@${bodyFile}`, `${api}/bench/upload`], 'speed_upload', 10, 'curl speed_upload of an 8 MiB body, median')
    const download = await curlTransfer([`${api}/bench/download?bytes=${BULK_BYTES}`], 'speed_download', 10, 'curl speed_download of 8 MiB, median')
    const transfer = (name: string, value: number | null, reference: Reference) =>
      value === null ? {group: 'hardware', name, value: 0, unit: 'MiB/s', note: ours.note ?? 'not measured'} : row('hardware', name, value, 'MiB/s', reference, sameRoutes)
    return [
      row('hardware', 'network latency to a loopback devnet', ours.latency_ms_median, 'ms', latency, 'ours: node:http on a kept-alive connection'),
      transfer('network upload 8 MiB to a loopback devnet', ours.upload_mib_per_second, upload),
      transfer('network download 8 MiB from a loopback devnet', ours.download_mib_per_second, download),
    ]
  } finally {
    await server.stop()
    rmSync(dataDir, {recursive: true, force: true})
  }
}

async function gpuRows(): Promise<BenchRow[]> {
  const inventory = await readGpuInventory()
  const gpus = gpuInfos(inventory)
  if (gpus.length === 0) return [{group: 'hardware', name: 'GPUs found', value: 0, unit: 'GPUs', note: describeInventory(inventory)}]
  return gpus.map((gpu) => ({
    group: 'hardware',
    name: `GPU ${gpu.index}: ${gpu.name}, driver ${gpu.driver_version}${gpu.compute_capability ? `, cc ${gpu.compute_capability}` : ''}`,
    value: gpu.memory_mib,
    unit: 'MiB',
    note: 'as nvidia-smi reports it (the same source: no independent reference)',
  }))
}

export const hardwareBench: BenchSection = async () => {
  process.stderr.write(`bench: hardware, ${SECONDS} s per measurement on ${availableParallelism()} cores, storage in ${STORAGE_DIR}\n`)
  return [...(await cpuRows()), ...(await memoryRows()), ...(await storageRows()), ...(await networkRows()), ...(await gpuRows())]
}
