import {execFile} from 'node:child_process'
import {z} from 'zod'

/**
 * nvidia-smi, the one program that asks the NVIDIA driver, and the three answers Outpost reads from it. The formats
 * follow NVIDIA's nvidia-smi(1) manual (driver 550: `--query-gpu` with `--format=csv,noheader,nounits` prints one line
 * per GPU, the fields in the order asked, separated by ", "; a field the device can't report reads `[N/A]` or
 * `[Not Supported]`; exit 9 "NVIDIA driver is not loaded", 12 "NVML shared library couldn't be found", 6 "query
 * unsuccessful", with "No devices were found" when there is no GPU) and the MIG user guide (`nvidia-smi -L` lists each
 * GPU and, indented beneath it, its MIG devices: `  MIG 1g.5gb     Device  0: (UUID: MIG-…)`; drivers before R470
 * named them `MIG-GPU-<uuid>/<gi>/<ci>`). Peers read them the same way: dcgm-exporter's and the SLURM gres scripts
 * of ComputeCanada's magic_castle (`--query-gpu=index,mig.mode.current --format=csv,noheader`).
 */

/** The inventory fields, in the order of the query. */
export const INVENTORY_FIELDS = ['index', 'uuid', 'name', 'memory.total', 'compute_cap', 'driver_version', 'mig.mode.current'] as const
/** Drivers before 510 know neither compute_cap nor, before 450, mig.mode.current: they are asked for the rest. */
export const LEGACY_INVENTORY_FIELDS = ['index', 'uuid', 'name', 'memory.total', 'driver_version'] as const
/** The per-device readings of the metrics, in the order of the query. */
export const METRIC_FIELDS = ['index', 'uuid', 'utilization.gpu', 'memory.used', 'temperature.gpu', 'power.draw'] as const

const NOT_AVAILABLE = new Set(['[N/A]', 'N/A', '[Not Supported]', '[Unknown Error]', ''])
const GPU_UUID = /^GPU-[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$/
const MIG_UUID = /^MIG-(?:[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}|GPU-[0-9a-fA-F-]{36}\/\d+\/\d+)$/

const optionalNumber = z
  .string()
  .transform((text) => (NOT_AVAILABLE.has(text) ? undefined : Number(text)))
  .pipe(z.number().nonnegative().optional())

export const GpuRow = z.object({
  index: z.coerce.number().int().nonnegative(),
  uuid: z.string().regex(GPU_UUID, 'expected a GPU UUID, GPU-xxxxxxxx-…'),
  name: z.string().min(1),
  memoryMib: z.coerce.number().int().positive(),
  computeCapability: z
    .string()
    .optional()
    .transform((text) => (text === undefined || NOT_AVAILABLE.has(text) ? undefined : text))
    .pipe(z.string().regex(/^\d+\.\d+$/, 'expected a compute capability like 9.0').optional()),
  driverVersion: z.string().min(1),
  /** `unsupported` on GPUs without MIG (and on drivers too old to be asked). */
  migMode: z
    .string()
    .optional()
    .transform((text) => (text === 'Enabled' ? 'enabled' : text === 'Disabled' ? 'disabled' : 'unsupported')),
})
export type GpuRow = z.output<typeof GpuRow>

export const MetricRow = z.object({
  index: z.coerce.number().int().nonnegative(),
  uuid: z.string().regex(GPU_UUID, 'expected a GPU UUID'),
  utilizationPercent: optionalNumber,
  memoryUsedMib: optionalNumber,
  temperatureCelsius: optionalNumber,
  powerWatts: optionalNumber,
})
export type MetricRow = z.output<typeof MetricRow>

export interface MigDevice {
  /** The MIG UUID: what CUDA_VISIBLE_DEVICES and Docker's device IDs name it by. */
  uuid: string
  /** The profile, like 1g.10gb (a GPU instance of one compute slice and 10 GB). */
  profile: string
  /** Its number under its GPU, as `nvidia-smi -L` counts. */
  device: number
}

/** The MIG devices of each GPU, by GPU UUID, from `nvidia-smi -L`. */
export function parseGpuList(text: string): Map<string, MigDevice[]> {
  const result = new Map<string, MigDevice[]>()
  let current: MigDevice[] | undefined
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    const gpu = /^GPU (\d+): .+ \(UUID: (GPU-[0-9a-fA-F-]+)\)\s*$/.exec(line)
    if (gpu) {
      current = []
      result.set(gpu[2]!, current)
      continue
    }
    const mig = /^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[^)]+)\)\s*$/.exec(line)
    if (mig && current && MIG_UUID.test(mig[3]!)) {
      current.push({profile: mig[1]!, device: Number(mig[2]), uuid: mig[3]!})
      continue
    }
    throw new NvidiaSmiFormatError(`nvidia-smi -L printed a line that is neither a GPU nor one of its MIG devices: "${line.trim()}"`)
  }
  return result
}

/** `--query-gpu` lines into rows of the named fields; a line with another number of fields is an error, not a guess. */
export function parseCsv<T>(text: string, fields: readonly string[], row: z.ZodType<T>, keys: readonly string[]): T[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const cells = line.split(',').map((cell) => cell.trim())
      if (cells.length !== fields.length) throw new NvidiaSmiFormatError(`nvidia-smi printed ${cells.length} fields where ${fields.length} (${fields.join(',')}) were asked: "${line}"`)
      const parsed = row.safeParse(Object.fromEntries(keys.map((key, index) => [key, cells[index]])))
      if (!parsed.success) {
        const issue = parsed.error.issues[0]
        throw new NvidiaSmiFormatError(`nvidia-smi printed "${line}": ${String(issue?.path[0] ?? '')} ${issue?.message ?? 'is not valid'}`)
      }
      return parsed.data
    })
}

const INVENTORY_KEYS = ['index', 'uuid', 'name', 'memoryMib', 'computeCapability', 'driverVersion', 'migMode'] as const
const LEGACY_KEYS = ['index', 'uuid', 'name', 'memoryMib', 'driverVersion'] as const
const METRIC_KEYS = ['index', 'uuid', 'utilizationPercent', 'memoryUsedMib', 'temperatureCelsius', 'powerWatts'] as const

export function parseInventory(text: string): GpuRow[] {
  return parseCsv(text, INVENTORY_FIELDS, GpuRow, INVENTORY_KEYS)
}

export function parseLegacyInventory(text: string): GpuRow[] {
  return parseCsv(text, LEGACY_INVENTORY_FIELDS, GpuRow, LEGACY_KEYS)
}

export function parseMetrics(text: string): MetricRow[] {
  return parseCsv(text, METRIC_FIELDS, MetricRow, METRIC_KEYS)
}

/** nvidia-smi answered in a shape that can't be read: its answer is unknown, not "no GPUs". */
export class NvidiaSmiFormatError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'NvidiaSmiFormatError'
  }
}

/** Why nvidia-smi gave no answer. */
export type NvidiaSmiFailure =
  /** Not installed: this host has no NVIDIA driver. */
  | {kind: 'missing'; message: string}
  /** The driver answers and knows no GPU. */
  | {kind: 'no_devices'; message: string}
  /** Installed, and failing: driver not loaded, library mismatch, a GPU fallen off the bus, a hang. */
  | {kind: 'failed'; message: string; exitCode?: number}
  /** An older driver that does not know a field that was asked for. */
  | {kind: 'unknown_field'; message: string}

export type NvidiaSmiAnswer = {ok: true; stdout: string} | ({ok: false} & NvidiaSmiFailure)

/** What the driver said about exit codes it documents, for a failure that printed nothing. */
const EXIT_MEANINGS: Record<number, string> = {
  2: 'invalid argument',
  3: 'the operation is not available on this device',
  4: 'no permission',
  6: 'the query was unsuccessful',
  8: 'the external power cables are not attached',
  9: 'the NVIDIA driver is not loaded',
  10: 'the kernel detected an interrupt issue with a GPU',
  12: 'the NVML shared library could not be found or loaded',
  13: 'the NVML library does not implement this function',
  14: 'the infoROM is corrupted',
  15: 'a GPU has fallen off the bus or is otherwise inaccessible',
}

/** Runs nvidia-smi with `args`; every failure is a classified answer, never an exception. */
export function runNvidiaSmi(command: string, args: readonly string[], timeoutMs: number): Promise<NvidiaSmiAnswer> {
  return new Promise((resolve) => {
    execFile(command, args, {timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024, env: {...process.env, LC_ALL: 'C'}}, (error, stdout, stderr) => {
      if (!error) return resolve({ok: true, stdout})
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return resolve({ok: false, kind: 'missing', message: `${command} is not installed (no NVIDIA driver)`})
      if (code === 'EACCES') return resolve({ok: false, kind: 'failed', message: `${command} is not executable`})
      const said = `${stdout}\n${stderr}`
        .split('\n')
        .map((line) => line.trim())
        .filter(Boolean)
      const exitCode = typeof code === 'number' ? code : undefined
      if ((error as {killed?: boolean}).killed) return resolve({ok: false, kind: 'failed', message: `${command} did not answer within ${timeoutMs / 1000} s (a hung driver or GPU)`})
      const first = said[0] ?? (exitCode !== undefined ? (EXIT_MEANINGS[exitCode] ?? `exit code ${exitCode}`) : error.message)
      if (said.some((line) => /^No devices were found/i.test(line))) return resolve({ok: false, kind: 'no_devices', message: 'the NVIDIA driver found no GPU'})
      if (said.some((line) => /is not a valid field to query/i.test(line))) return resolve({ok: false, kind: 'unknown_field', message: first})
      resolve({ok: false, kind: 'failed', message: said.length > 1 ? said.slice(0, 2).join(' ') : first, ...(exitCode !== undefined ? {exitCode} : {})})
    })
  })
}

export function queryArgs(fields: readonly string[]): string[] {
  return [`--query-gpu=${fields.join(',')}`, '--format=csv,noheader,nounits']
}
