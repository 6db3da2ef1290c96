import type {GpuConfig} from '../core/config/schema.js'
import type {GpuUnit} from './allocator.js'
import type {GpuInventory, NvidiaGpu} from './inventory.js'

/** The name a device is published under: the operator's `[gpu.models]` name, else what the driver calls it. */
export function publishedModel(config: Pick<GpuConfig, 'models'>, driverName: string): string {
  return config.models[driverName] ?? driverName
}

/** A local device with what doctor and the benchmark show of it. */
export interface LocalGpuUnit extends GpuUnit {
  /** `0` for a GPU, `0 MIG 1` for MIG device 1 of GPU 0. */
  label: string
  /** The UUID of the physical GPU (the device itself for a whole GPU): metrics are read per physical GPU. */
  gpuUuid: string
}

export interface LocalSelection {
  units: LocalGpuUnit[]
  /** Why a GPU, or a device named in `[gpu] devices`, is not handed out. */
  notes: string[]
}

/**
 * The local devices Outpost may hand out, from the inventory and `[gpu]`: every GPU (or the ones `devices` names),
 * and with `mig = true` the MIG devices of GPUs whose MIG mode is on. A GPU with MIG on can't be given whole (CUDA
 * sees only its MIG devices), so without `mig` it is left out, with a note saying so.
 */
export function localGpuUnits(inventory: GpuInventory, config: Pick<GpuConfig, 'devices' | 'mig' | 'models'>): LocalSelection {
  if (inventory.state !== 'ready') return {units: [], notes: []}
  const wanted = config.devices === undefined ? undefined : new Set(config.devices.map((name) => name.toLowerCase()))
  const named = (...names: string[]) => wanted === undefined || names.some((name) => wanted.has(name.toLowerCase()))
  const units: LocalGpuUnit[] = []
  const notes: string[] = []
  const seen = new Set<string>()
  for (const gpu of inventory.gpus) {
    const wholeNamed = named(String(gpu.index), gpu.uuid)
    for (const name of [String(gpu.index), gpu.uuid]) seen.add(name.toLowerCase())
    if (gpu.migMode !== 'enabled') {
      if (wholeNamed) units.push({id: gpu.uuid, model: publishedModel(config, gpu.name), label: String(gpu.index), gpuUuid: gpu.uuid})
      continue
    }
    for (const device of gpu.migDevices) seen.add(device.uuid.toLowerCase())
    const migNamed = gpu.migDevices.filter((device) => wholeNamed || named(device.uuid))
    if (migNamed.length === 0 && !wholeNamed) continue
    if (!config.mig) {
      notes.push(`GPU ${gpu.index} has MIG mode on and is not handed out: set [gpu] mig = true to hand out its MIG devices, or turn MIG off (nvidia-smi -i ${gpu.index} -mig 0)`)
      continue
    }
    if (gpu.migDevices.length === 0) {
      notes.push(`GPU ${gpu.index} has MIG mode on and no MIG device: create them (nvidia-smi mig -i ${gpu.index} -cgi <profiles> -C)`)
      continue
    }
    units.push(...migNamed.map((device) => migUnit(gpu, device, config)))
  }
  for (const name of config.devices ?? []) {
    if (!seen.has(name.toLowerCase())) notes.push(`[gpu] devices names ${name}, which nvidia-smi does not list`)
  }
  return {units, notes}
}

function migUnit(gpu: NvidiaGpu, device: NvidiaGpu['migDevices'][number], config: Pick<GpuConfig, 'models'>): LocalGpuUnit {
  return {id: device.uuid, model: publishedModel(config, `${gpu.name} MIG ${device.profile}`), label: `${gpu.index} MIG ${device.device}`, gpuUuid: gpu.uuid}
}
