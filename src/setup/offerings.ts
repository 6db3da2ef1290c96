import {statfsSync} from 'node:fs'
import {cpus, totalmem} from 'node:os'

import type {LoadedConfig} from '../core/config/load.js'
import type {Offering} from '../core/config/schema.js'
import {formatAmount, parseAmount} from '../core/decimal.js'
import {describeError} from '../core/errors.js'
import {createProvisioner} from '../provisioners/index.js'
import type {Capacity} from '../provisioners/provisioner.js'

/** What init sizes offerings from, and where the figures came from (shown to the person who chooses). */
export interface DetectedCapacity extends Capacity {
  source: string
}

const BACKEND_CAPACITY_TIMEOUT_MS = 15_000

/** This host's CPUs, memory and the free disk under `dir`: what the local backend rents out. */
export function hostCapacity(dir: string): DetectedCapacity {
  const disk = statfsSync(dir)
  return {
    cpuCores: cpus().length,
    memoryMb: Math.floor(totalmem() / 1024 / 1024),
    storageGb: Math.floor((disk.bavail * disk.bsize) / 1024 ** 3),
    gpuCount: 0,
    source: 'this host',
  }
}

/**
 * The capacity the configured backend reports (a Proxmox node, a SLURM partition, this host for `local`), or a reason
 * why there is none: a backend that can't be asked, or one that doesn't report capacity (script, manual).
 */
export async function backendCapacity(loaded: LoadedConfig): Promise<DetectedCapacity | {unknown: string}> {
  const type = loaded.config.provisioner.type
  const provisioner = createProvisioner(loaded)
  try {
    const capacity = await provisioner.capacity(AbortSignal.timeout(BACKEND_CAPACITY_TIMEOUT_MS))
    return capacity ? {...capacity, source: `the ${type} backend`} : {unknown: `the ${type} backend reports no capacity`}
  } catch (error) {
    return {unknown: `the ${type} backend could not be asked for its capacity: ${describeError(error)}`}
  } finally {
    await provisioner.close?.()
  }
}

/** The sizes init offers, as shares of what is left once the host keeps a core and 1 GiB for itself. */
export const OFFERING_SIZES = [
  {name: 'small', share: 1 / 4},
  {name: 'medium', share: 1 / 2},
  {name: 'large', share: 1},
] as const
export type OfferingSize = (typeof OFFERING_SIZES)[number]['name']
export const OFFERING_SIZE_NAMES: readonly string[] = OFFERING_SIZES.map((size) => size.name)

export function isOfferingSize(name: string): name is OfferingSize {
  return OFFERING_SIZE_NAMES.includes(name)
}

export const DEFAULT_PRICE_PER_CORE = '0.02'

const MEMORY_STEP_MB = 512
const STORAGE_STEP_GB = 5

function roundDown(value: number, step: number): number {
  return Math.max(step, Math.floor(value / step) * step)
}

/**
 * Compute offerings sized from a capacity: each size a share of the usable cores, memory and disk, priced by that share
 * of the cores (a quarter of a one-core host costs a quarter of a core). Sizes that come out the same on a small host
 * are offered once (the smallest name).
 */
export function sizeOfferings(capacity: Capacity, pricePerCore: string): Offering[] {
  const usable = {cores: Math.max(1, capacity.cpuCores - 1), memoryMb: Math.max(MEMORY_STEP_MB, capacity.memoryMb - 1024), storageGb: Math.max(1, Math.floor(capacity.storageGb * 0.9))}
  const perCore = parseAmount(pricePerCore, '--price-per-core')
  const offerings: Offering[] = []
  for (const size of OFFERING_SIZES) {
    const cores = Math.max(1, Math.floor(usable.cores * size.share))
    const memoryMb = Math.min(usable.memoryMb, roundDown(usable.memoryMb * size.share, MEMORY_STEP_MB))
    const storageGb = Math.min(usable.storageGb, roundDown(usable.storageGb * size.share, STORAGE_STEP_GB))
    const same = offerings.some((offering) => offering.cpu_cores === cores && offering.memory_mb === memoryMb && offering.storage_gb === storageGb)
    if (same) continue
    offerings.push({
      name: size.name,
      product_type: 'compute',
      cpu_cores: cores,
      memory_mb: memoryMb,
      storage_gb: storageGb,
      gpu_count: 0,
      price_per_hour: formatAmount(share(perCore, usable.cores * size.share)),
    })
  }
  return offerings
}

/** An amount times a share of cores, in whole micro-units (at least one: no offering is free). */
function share(micro: bigint, cores: number): bigint {
  const thousandths = BigInt(Math.round(cores * 1000))
  const product = (micro * thousandths) / 1000n
  return product > 0n ? product : 1n
}

/** One line describing an offering, for a question or a summary. */
export function describeOffering(offering: Offering): string {
  return `${offering.name}: ${offering.cpu_cores} vCPU, ${offering.memory_mb} MiB, ${offering.storage_gb} GiB, ${offering.price_per_hour}/h`
}

/** The [[offerings]] tables of a config, in the order given. */
export function offeringsToml(offerings: readonly Offering[]): string {
  return offerings
    .map((offering) =>
      [
        '[[offerings]]',
        `name = ${JSON.stringify(offering.name)}`,
        `product_type = ${JSON.stringify(offering.product_type)}`,
        `cpu_cores = ${offering.cpu_cores}`,
        `memory_mb = ${offering.memory_mb}`,
        `storage_gb = ${offering.storage_gb}`,
        ...(offering.gpu_count > 0 ? [`gpu_count = ${offering.gpu_count}`] : []),
        `price_per_hour = ${JSON.stringify(offering.price_per_hour)}`,
      ].join('\n'),
    )
    .join('\n\n')
}
