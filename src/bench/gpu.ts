import {execa} from 'execa'
import {z} from 'zod'

/** GPUs as the NVIDIA driver reports them through nvidia-smi; nothing is reported without the driver, never guessed. */

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

const QUERY_TIMEOUT_MS = 15_000

type Answer = {ok: true; output: string} | {ok: false; missing: boolean; message: string}

async function query(command: string, fields: string): Promise<Answer> {
  const result = await execa(command, [`--query-gpu=${fields}`, '--format=csv,noheader,nounits'], {timeout: QUERY_TIMEOUT_MS, reject: false})
  if (!result.failed) return {ok: true, output: result.stdout}
  if (result.timedOut) return {ok: false, missing: false, message: `no answer within ${QUERY_TIMEOUT_MS / 1000} s`}
  // nvidia-smi says what went wrong on stdout as often as on stderr.
  const firstLine = `${result.stdout}\n${result.stderr}`.split('\n').find((line) => line.trim() !== '')?.trim()
  return {ok: false, missing: result.code === 'ENOENT', message: firstLine ?? result.shortMessage ?? `exit code ${result.exitCode}`}
}

export async function detectGpus(command = 'nvidia-smi'): Promise<GpuRun> {
  const first = await query(command, FIELDS_WITH_CAPABILITY)
  if (first.ok) return {gpus: parseNvidiaSmi(first.output)}
  if (first.missing) return {gpus: [], note: 'no NVIDIA driver: nvidia-smi is not installed'}
  // Drivers older than 510 can't be asked for compute_cap: ask them again without it.
  if (!/compute_cap/.test(first.message)) return {gpus: [], note: `nvidia-smi failed: ${first.message}`}
  const again = await query(command, FIELDS)
  return again.ok ? {gpus: parseNvidiaSmi(again.output)} : {gpus: [], note: `nvidia-smi failed: ${again.message}`}
}
