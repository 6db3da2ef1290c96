import type {Capacity} from '../../provisioners/provisioner.js'

/** What a machine needs, or what a host has, in the units of PROTOCOL §6 (the provisioner's Capacity shape). */
export type Resources = Omit<Capacity, 'gpuModels'>

export const NO_RESOURCES: Resources = {cpuCores: 0, memoryMb: 0, storageGb: 0, gpuCount: 0}

const LABELS: Readonly<Record<keyof Resources, string>> = {cpuCores: 'cpu cores', memoryMb: 'MB memory', storageGb: 'GB storage', gpuCount: 'GPUs'}
const KEYS = Object.keys(LABELS) as (keyof Resources)[]

/** The §6/§11 fields of a contract or an order's requirements. */
export function resourcesOf(wire: {cpu_cores: number; memory_mb: number; storage_gb: number; gpu_count?: number}): Resources {
  return {cpuCores: wire.cpu_cores, memoryMb: wire.memory_mb, storageGb: wire.storage_gb, gpuCount: wire.gpu_count ?? 0}
}

export function addResources(a: Resources, b: Resources): Resources {
  return {cpuCores: a.cpuCores + b.cpuCores, memoryMb: a.memoryMb + b.memoryMb, storageGb: a.storageGb + b.storageGb, gpuCount: a.gpuCount + b.gpuCount}
}

export function sumResources(items: Iterable<Resources>): Resources {
  let total = NO_RESOURCES
  for (const item of items) total = addResources(total, item)
  return total
}

/** The first resource `need` asks more of than `available` has, said for a log line; undefined when it fits. */
export function shortfall(need: Resources, available: Resources): string | undefined {
  const short = KEYS.find((key) => need[key] > available[key])
  return short === undefined ? undefined : `${need[short]} ${LABELS[short]} needed, ${Math.max(0, available[short])} available`
}

export function subtractResources(a: Resources, b: Resources): Resources {
  return {cpuCores: a.cpuCores - b.cpuCores, memoryMb: a.memoryMb - b.memoryMb, storageGb: a.storageGb - b.storageGb, gpuCount: a.gpuCount - b.gpuCount}
}

/** One resource's use against the host's capacity of it. */
export interface Utilisation {
  resource: string
  used: number
  capacity: number
}

/** The resource used the most, as a share of capacity (resources the host has none of are left out). */
export function mostUtilised(used: Resources, capacity: Resources): Utilisation | undefined {
  let most: Utilisation | undefined
  for (const key of KEYS) {
    if (capacity[key] <= 0) continue
    // Compared as cross products: exact in integers, no division.
    if (!most || used[key] * most.capacity > most.used * capacity[key]) most = {resource: LABELS[key], used: used[key], capacity: capacity[key]}
  }
  return most
}

export function percentOf(utilisation: Utilisation): number {
  return Math.round((utilisation.used * 100) / utilisation.capacity)
}
