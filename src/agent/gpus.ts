import type {HeartbeatBody} from '../core/api/provider.js'
import type {Contract} from '../core/api/schemas.js'
import type {GpuConfig} from '../core/config/schema.js'
import {contractHolder, GpuAllocator, type AllocationLog, type GpuUnit} from '../gpu/allocator.js'
import {NVIDIA_SMI_TIMEOUT_MS, readGpuInventory} from '../gpu/inventory.js'
import {readDcgmMetrics, readNvidiaSmiMetrics} from '../gpu/metrics.js'
import type {Provisioner} from '../provisioners/provisioner.js'
import type {Journal} from './journal.js'
import {registerGpuMetrics, type HeldGpuReading} from './metrics.js'

/** Allocations written to the agent's journal (fsynced before they are used), so a restart holds what it held. */
export function journalAllocationLog(journal: Journal): AllocationLog {
  return {
    allocated: (holder, ids) => journal.append({event: 'gpu_allocated', holder, devices: [...ids]}),
    released: (holder) => journal.append({event: 'gpu_released', holder}),
  }
}

/**
 * The allocator of a backend whose GPUs Outpost hands out (Docker, Proxmox passthrough), with the allocations the
 * journal kept; undefined for a backend that allocates GPUs itself (SLURM) or names none.
 */
export async function openGpuAllocator(provisioner: Provisioner, held: ReadonlyMap<string, readonly string[]>, journal: Journal): Promise<GpuAllocator | undefined> {
  const units = await provisioner.gpuUnits?.()
  if (units === undefined) return undefined
  return new GpuAllocator(units, held, journalAllocationLog(journal))
}

/** The devices a contract gets from the allocator, or none when it asks for none. */
export function allocateForContract(allocator: GpuAllocator, contract: Contract): GpuUnit[] {
  return allocator.allocate(contractHolder(contract.contract_id), {count: contract.gpu_count})
}

type WireCapacity = NonNullable<HeartbeatBody['capacity']>

/**
 * What is not in use now (PROTOCOL §5 `free`): the capacity less the contracts held here; the GPUs from the
 * allocator when Outpost hands them out, since it knows which devices are free and of which model.
 */
export function freeCapacity(capacity: WireCapacity, held: readonly Contract[], allocator: GpuAllocator | undefined): WireCapacity {
  const used = (pick: (contract: Contract) => number) => held.reduce((total, contract) => total + pick(contract), 0)
  const free = allocator?.free()
  return {
    cpu_cores: Math.max(0, capacity.cpu_cores - used((contract) => contract.cpu_cores)),
    memory_mb: Math.max(0, capacity.memory_mb - used((contract) => contract.memory_mb)),
    storage_gb: Math.max(0, capacity.storage_gb - used((contract) => contract.storage_gb)),
    gpu_count: free ? free.count : Math.max(0, capacity.gpu_count - used((contract) => contract.gpu_count)),
    ...(free ? {gpu_models: free.models} : capacity.gpu_models ? {gpu_models: capacity.gpu_models} : {}),
  }
}

/**
 * Exports this host's GPU metrics (from dcgm-exporter when `[gpu] dcgm_url` names one, else nvidia-smi), each GPU
 * labelled with the holders of its devices (a MIG device counts for its GPU). Nothing is exported on a host whose
 * driver lists no GPU.
 */
export async function watchGpuMetrics(registry: Parameters<typeof registerGpuMetrics>[0], config: GpuConfig, holders: () => ReadonlyMap<string, string>): Promise<boolean> {
  const inventory = await readGpuInventory(config.nvidia_smi)
  if (inventory.state !== 'ready') return false
  const gpuOf = new Map(inventory.gpus.flatMap((gpu) => gpu.migDevices.map((device) => [device.uuid, gpu.uuid] as const)))
  const dcgm = config.dcgm_url
  const read = dcgm ? () => readDcgmMetrics(dcgm, NVIDIA_SMI_TIMEOUT_MS) : () => readNvidiaSmiMetrics(config.nvidia_smi, NVIDIA_SMI_TIMEOUT_MS)
  registerGpuMetrics(registry, async (): Promise<HeldGpuReading[]> => {
    const held = [...holders()]
    return (await read()).map((reading) => ({...reading, holders: held.filter(([id]) => (gpuOf.get(id) ?? id) === reading.uuid).map(([, holder]) => holder)}))
  })
  return true
}
