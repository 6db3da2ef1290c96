import {
  INVENTORY_FIELDS,
  LEGACY_INVENTORY_FIELDS,
  NvidiaSmiFormatError,
  parseGpuList,
  parseInventory,
  parseLegacyInventory,
  queryArgs,
  runNvidiaSmi,
  type GpuRow,
  type MigDevice,
} from './nvidia-smi.js'

/** One NVIDIA GPU as its driver describes it, with its MIG devices when MIG mode is on. */
export interface NvidiaGpu extends GpuRow {
  migDevices: MigDevice[]
}

/**
 * What this host's NVIDIA driver reports. No driver, or a driver that fails, is a state of its own with the reason,
 * never an exception and never "zero GPUs" said with confidence: `error` means the GPUs are unknown.
 */
export type GpuInventory =
  | {state: 'ready'; driverVersion: string; gpus: NvidiaGpu[]; notes: string[]}
  | {state: 'none'; reason: string}
  | {state: 'error'; reason: string}

export const NVIDIA_SMI_TIMEOUT_MS = 15_000

/** Asks nvidia-smi for the GPUs (and, where MIG is on, their MIG devices). */
export async function readGpuInventory(command = 'nvidia-smi', timeoutMs = NVIDIA_SMI_TIMEOUT_MS): Promise<GpuInventory> {
  let rows: GpuRow[]
  try {
    let answer = await runNvidiaSmi(command, queryArgs(INVENTORY_FIELDS), timeoutMs)
    let parse = parseInventory
    if (!answer.ok && answer.kind === 'unknown_field') {
      answer = await runNvidiaSmi(command, queryArgs(LEGACY_INVENTORY_FIELDS), timeoutMs)
      parse = parseLegacyInventory
    }
    if (!answer.ok) {
      if (answer.kind === 'missing' || answer.kind === 'no_devices') return {state: 'none', reason: answer.message}
      return {state: 'error', reason: `nvidia-smi failed: ${answer.message}`}
    }
    rows = parse(answer.stdout)
  } catch (error) {
    if (error instanceof NvidiaSmiFormatError) return {state: 'error', reason: error.message}
    throw error
  }
  if (rows.length === 0) return {state: 'none', reason: 'nvidia-smi lists no GPU'}
  const notes: string[] = []
  let migDevices = new Map<string, MigDevice[]>()
  if (rows.some((row) => row.migMode === 'enabled')) {
    const listed = await runNvidiaSmi(command, ['-L'], timeoutMs)
    if (listed.ok) {
      try {
        migDevices = parseGpuList(listed.stdout)
      } catch (error) {
        if (!(error instanceof NvidiaSmiFormatError)) throw error
        notes.push(error.message)
      }
    } else {
      notes.push(`MIG devices unknown: nvidia-smi -L failed: ${listed.message}`)
    }
  }
  const gpus = rows.map((row) => ({...row, migDevices: migDevices.get(row.uuid) ?? []}))
  return {state: 'ready', driverVersion: gpus[0]!.driverVersion, gpus, notes}
}

/** One line for doctor and the wizards: `2 × NVIDIA H100 80GB HBM3 (81559 MiB), driver 550.54.15`. */
export function describeInventory(inventory: GpuInventory): string {
  if (inventory.state === 'none') return `no NVIDIA GPU: ${inventory.reason}`
  if (inventory.state === 'error') return `GPUs unknown: ${inventory.reason}`
  const groups = new Map<string, number>()
  for (const gpu of inventory.gpus) {
    const key = `${gpu.name} (${gpu.memoryMib} MiB)`
    groups.set(key, (groups.get(key) ?? 0) + 1)
  }
  const mig = inventory.gpus.filter((gpu) => gpu.migMode === 'enabled')
  const migText = mig.length > 0 ? `; MIG on GPU ${mig.map((gpu) => `${gpu.index} (${gpu.migDevices.length} devices)`).join(', ')}` : ''
  return `${[...groups].map(([key, count]) => `${count} × ${key}`).join(', ')}, driver ${inventory.driverVersion}${migText}`
}
