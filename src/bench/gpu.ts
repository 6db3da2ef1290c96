import {execFile} from 'node:child_process'
import {promisify} from 'node:util'
import {z} from 'zod'

/** GPUs as the NVIDIA driver reports them through nvidia-smi; nothing is reported without the driver, never guessed. */

const run = promisify(execFile)

export const GpuInfo = z.object({
  name: z.string().min(1),
  memory_mib: z.number().int().positive(),
  driver_version: z.string().min(1),
  /** Absent from drivers older than 510, which can't be asked for it. */
  compute_capability: z.string().regex(/^\d+\.\d+$/).optional(),
})
export type GpuInfo = z.infer<typeof GpuInfo>

export interface GpuRun {
  gpus: GpuInfo[]
  note?: string
}

const FIELDS_WITH_CAPABILITY = 'name,memory.total,driver_version,compute_cap'
const FIELDS = 'name,memory.total,driver_version'

/** Parses `--format=csv,noheader,nounits` lines (`NVIDIA H100 80GB HBM3, 81559, 550.54.15, 9.0`). */
export function parseNvidiaSmi(output: string): GpuInfo[] {
  return output
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [name, memory, driver, capability] = line.split(',').map((cell) => cell.trim())
      return GpuInfo.parse({
        name,
        memory_mib: Number(memory),
        driver_version: driver,
        ...(capability && capability !== '[N/A]' ? {compute_capability: capability} : {}),
      })
    })
}

function failure(error: unknown): {missing: boolean; message: string} {
  const code = typeof error === 'object' && error !== null && 'code' in error ? (error as {code: unknown}).code : undefined
  const stdout = typeof error === 'object' && error !== null && 'stdout' in error ? String((error as {stdout: unknown}).stdout) : ''
  const stderr = typeof error === 'object' && error !== null && 'stderr' in error ? String((error as {stderr: unknown}).stderr) : ''
  const firstLine = (stdout + '\n' + stderr).split('\n').find((line) => line.trim() !== '')?.trim()
  return {missing: code === 'ENOENT', message: firstLine ?? (error instanceof Error ? error.message : String(error))}
}

async function query(command: string, fields: string): Promise<string> {
  const {stdout} = await run(command, [`--query-gpu=${fields}`, '--format=csv,noheader,nounits'], {timeout: 15_000})
  return stdout
}

export async function detectGpus(command = 'nvidia-smi'): Promise<GpuRun> {
  let output: string
  try {
    output = await query(command, FIELDS_WITH_CAPABILITY)
  } catch (error) {
    const first = failure(error)
    if (first.missing) return {gpus: [], note: 'no NVIDIA driver: nvidia-smi is not installed'}
    if (!/compute_cap/.test(first.message)) return {gpus: [], note: `nvidia-smi failed: ${first.message}`}
    try {
      output = await query(command, FIELDS)
    } catch (retryError) {
      return {gpus: [], note: `nvidia-smi failed: ${failure(retryError).message}`}
    }
  }
  return {gpus: parseNvidiaSmi(output)}
}
