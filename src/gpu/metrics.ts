import {METRIC_FIELDS, NvidiaSmiFormatError, parseMetrics, queryArgs, runNvidiaSmi} from './nvidia-smi.js'

/** One physical GPU's readings now; a value the device does not report is absent, never zero. */
export interface GpuReading {
  index: number
  uuid: string
  utilizationPercent?: number
  memoryUsedMib?: number
  temperatureCelsius?: number
  powerWatts?: number
}

/** Readings could not be had: the series are left out of the scrape, not reported as zero. */
export class GpuMetricsError extends Error {
  constructor(message: string, options: {cause?: unknown} = {}) {
    super(message, options)
    this.name = 'GpuMetricsError'
  }
}

/** Per-GPU utilisation, memory used, temperature and power from `nvidia-smi --query-gpu`. */
export async function readNvidiaSmiMetrics(command: string, timeoutMs: number): Promise<GpuReading[]> {
  const answer = await runNvidiaSmi(command, queryArgs(METRIC_FIELDS), timeoutMs)
  if (!answer.ok) {
    if (answer.kind === 'missing' || answer.kind === 'no_devices') return []
    throw new GpuMetricsError(`nvidia-smi failed: ${answer.message}`)
  }
  try {
    return parseMetrics(answer.stdout)
  } catch (error) {
    if (error instanceof NvidiaSmiFormatError) throw new GpuMetricsError(error.message, {cause: error})
    throw error
  }
}

/**
 * The same readings from dcgm-exporter's /metrics (its default counters: DCGM_FI_DEV_GPU_UTIL in %,
 * DCGM_FI_DEV_FB_USED in MiB, DCGM_FI_DEV_GPU_TEMP in °C, DCGM_FI_DEV_POWER_USAGE in W, each labelled with `gpu` and
 * `UUID`, as NVIDIA's dcgm-exporter README and default-counters.csv list them). Series of MIG devices (labelled
 * GPU_I_ID) are left out: the readings are per physical GPU, as nvidia-smi gives them.
 */
export async function readDcgmMetrics(url: string, timeoutMs: number): Promise<GpuReading[]> {
  let text: string
  try {
    const response = await fetch(url, {signal: AbortSignal.timeout(timeoutMs)})
    if (!response.ok) throw new GpuMetricsError(`dcgm-exporter at ${url} answered HTTP ${response.status}`)
    text = await response.text()
  } catch (error) {
    if (error instanceof GpuMetricsError) throw error
    throw new GpuMetricsError(`dcgm-exporter at ${url} could not be read: ${error instanceof Error ? error.message : String(error)}`, {cause: error})
  }
  return parseDcgmMetrics(text)
}

const DCGM_FIELDS: Record<string, keyof Omit<GpuReading, 'index' | 'uuid'>> = {
  DCGM_FI_DEV_GPU_UTIL: 'utilizationPercent',
  DCGM_FI_DEV_FB_USED: 'memoryUsedMib',
  DCGM_FI_DEV_GPU_TEMP: 'temperatureCelsius',
  DCGM_FI_DEV_POWER_USAGE: 'powerWatts',
}

/** Reads the Prometheus text exposition of dcgm-exporter (only the four series above). */
export function parseDcgmMetrics(text: string): GpuReading[] {
  const byUuid = new Map<string, GpuReading>()
  for (const line of text.split('\n')) {
    const match = /^([A-Z_]+)\{(.*)\}\s+(\S+)(?:\s+\d+)?\s*$/.exec(line.trim())
    if (!match) continue
    const field = DCGM_FIELDS[match[1]!]
    if (!field) continue
    const labels = parseLabels(match[2]!)
    if (labels.GPU_I_ID !== undefined) continue
    const uuid = labels.UUID
    const index = Number(labels.gpu)
    const value = Number(match[3])
    if (!uuid || !Number.isInteger(index) || !Number.isFinite(value) || value < 0) continue
    const reading = byUuid.get(uuid) ?? {index, uuid}
    reading[field] = value
    byUuid.set(uuid, reading)
  }
  return [...byUuid.values()].sort((a, b) => a.index - b.index)
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const match of text.matchAll(/(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"/g)) labels[match[1]!] = match[2]!.replaceAll(/\\(.)/g, (_, character: string) => (character === 'n' ? '\n' : character))
  return labels
}
