import {execFile} from 'node:child_process'
import {accessSync, constants, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {delimiter, join} from 'node:path'
import {promisify} from 'node:util'
import {z} from 'zod'

import {templatePath} from '../core/templates.js'
import {readGpuInventory, type GpuInventory} from '../gpu/inventory.js'

/**
 * The GPU part of the benchmark: what the driver reports (nvidia-smi, through the one GPU inventory), and, where the
 * CUDA toolkit's nvcc is installed, two measurements by a small CUDA program compiled here (templates/bench/
 * gpu-bench.cu): device-to-device copy rate and an FP32 tiled matrix multiply, on each GPU whose MIG mode is off.
 * Nothing is guessed: without a driver there are no GPUs, without nvcc no measurement, and the note says which.
 */

const run = promisify(execFile)

export interface GpuInfo {
  index: number
  uuid: string
  name: string
  memory_mib: number
  driver_version: string
  /** Absent from drivers older than 510, which can't be asked for it. */
  compute_capability?: string
}

/** One GPU measured by gpu-bench.cu. */
export const GpuMeasurement = z.object({
  device_name: z.string().min(1),
  copy_bytes: z.number().positive(),
  copy_seconds: z.number().positive(),
  copy_gib_per_second: z.number().positive(),
  matmul_n: z.number().int().positive(),
  repeats: z.number().int().positive(),
  matmul_seconds: z.number().positive(),
  matmul_gflops: z.number().positive(),
  matmul_max_relative_error: z.number().nonnegative(),
})
export type GpuMeasurement = z.infer<typeof GpuMeasurement>

export interface GpuRun {
  gpus: GpuInfo[]
  /** Why there is no GPU, or no measurement. */
  note?: string
  /** By GPU index; absent without nvcc. */
  measured?: (GpuMeasurement & {index: number; uuid: string})[]
  /** What `measured` measures, in words. */
  method?: string
}

export const MEASUREMENT_METHOD =
  'device-to-device cudaMemcpy rate (bytes copied per second; each byte is read and written once) and FP32 n×n matrix multiply with a 32×32 shared-memory tiled kernel (not cuBLAS, no tensor cores), 2n³ operations per run, sixteen entries checked against a double-precision product'

const SIZES = {full: {copyMib: 1024, n: 4096, repeats: 10}, quick: {copyMib: 64, n: 512, repeats: 3}}
const RUN_TIMEOUT_MS = 120_000
const COMPILE_TIMEOUT_MS = 300_000
/** Where the CUDA toolkit puts nvcc when its bin folder is not on the PATH. */
const NVCC_FALLBACK = '/usr/local/cuda/bin/nvcc'

export interface GpuBenchmarkOptions {
  nvidiaSmi?: string
  /** The nvcc to compile with; default: on the PATH, else /usr/local/cuda/bin/nvcc; false: measure nothing, as without one. */
  nvcc?: string | false
  quick: boolean
}

export function findNvcc(path = process.env.PATH ?? ''): string | undefined {
  for (const candidate of [...path.split(delimiter).filter(Boolean).map((directory) => join(directory, 'nvcc')), NVCC_FALLBACK]) {
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      continue
    }
  }
  return undefined
}

export function gpuInfos(inventory: GpuInventory): GpuInfo[] {
  if (inventory.state !== 'ready') return []
  return inventory.gpus.map((gpu) => ({
    index: gpu.index,
    uuid: gpu.uuid,
    name: gpu.name,
    memory_mib: gpu.memoryMib,
    driver_version: gpu.driverVersion,
    ...(gpu.computeCapability ? {compute_capability: gpu.computeCapability} : {}),
  }))
}

/** The GPUs as nvidia-smi reports them, measured where nvcc can build the program. */
export async function benchmarkGpus(options: GpuBenchmarkOptions): Promise<GpuRun> {
  const inventory = await readGpuInventory(options.nvidiaSmi)
  if (inventory.state === 'none') return {gpus: [], note: `no NVIDIA GPU: ${inventory.reason}`}
  if (inventory.state === 'error') return {gpus: [], note: `GPUs unknown: ${inventory.reason}`}
  const gpus = gpuInfos(inventory)
  const nvcc = options.nvcc === false ? undefined : (options.nvcc ?? findNvcc())
  if (!nvcc) return {gpus, note: 'not measured: nvcc (the CUDA toolkit) is not installed; install it to measure copy rate and matrix multiply'}
  const whole = inventory.gpus.filter((gpu) => gpu.migMode !== 'enabled')
  const skipped = inventory.gpus.filter((gpu) => gpu.migMode === 'enabled').map((gpu) => `GPU ${gpu.index} not measured: MIG mode is on`)
  const dir = mkdtempSync(join(tmpdir(), 'outpost-gpu-bench-'))
  try {
    const binary = await compile(nvcc, dir)
    const size = SIZES[options.quick ? 'quick' : 'full']
    const measured: NonNullable<GpuRun['measured']> = []
    for (const gpu of whole) measured.push({index: gpu.index, uuid: gpu.uuid, ...(await measure(binary, gpu.uuid, size))})
    return {gpus, measured, method: MEASUREMENT_METHOD, ...(skipped.length > 0 ? {note: skipped.join('; ')} : {})}
  } catch (error) {
    // What nvidia-smi reports stands; the measurement that failed says why in the note.
    if (error instanceof GpuBenchmarkError) return {gpus, note: `not measured: ${error.message}`}
    throw error
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

/** Builds gpu-bench for this machine's GPUs (`-arch=native`, CUDA 11.6 and later), else for nvcc's default target. */
async function compile(nvcc: string, dir: string): Promise<string> {
  const binary = join(dir, 'gpu-bench')
  const source = templatePath('bench/gpu-bench.cu')
  try {
    await run(nvcc, ['-O3', '-arch=native', '-o', binary, source], {timeout: COMPILE_TIMEOUT_MS})
  } catch {
    try {
      await run(nvcc, ['-O3', '-o', binary, source], {timeout: COMPILE_TIMEOUT_MS})
    } catch (error) {
      throw new GpuBenchmarkError(`nvcc could not build ${source}: ${firstLines(error)}`)
    }
  }
  return binary
}

async function measure(binary: string, uuid: string, size: (typeof SIZES)['full']): Promise<GpuMeasurement> {
  let stdout: string
  try {
    ;({stdout} = await run(binary, [String(size.copyMib), String(size.n), String(size.repeats)], {
      timeout: RUN_TIMEOUT_MS,
      env: {...process.env, CUDA_VISIBLE_DEVICES: uuid},
    }))
  } catch (error) {
    throw new GpuBenchmarkError(`the GPU benchmark failed on ${uuid}: ${firstLines(error)}`)
  }
  const line = stdout.trim().split('\n').at(-1) ?? ''
  let parsed: unknown
  try {
    parsed = JSON.parse(line)
  } catch {
    throw new GpuBenchmarkError(`the GPU benchmark printed "${line.slice(0, 200)}" where JSON was expected`)
  }
  const result = GpuMeasurement.safeParse(parsed)
  if (!result.success) throw new GpuBenchmarkError(`the GPU benchmark printed ${line.slice(0, 200)}: ${result.error.issues[0]?.message ?? 'not a measurement'}`)
  return result.data
}

export class GpuBenchmarkError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'GpuBenchmarkError'
  }
}

function firstLines(error: unknown): string {
  const text = typeof error === 'object' && error !== null && 'stdout' in error ? `${String((error as {stdout: unknown}).stdout)}\n${String((error as {stderr?: unknown}).stderr ?? '')}` : ''
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
  return lines.slice(0, 3).join(' | ') || (error instanceof Error ? error.message : String(error))
}
