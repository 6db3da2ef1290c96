import type {LoadedConfig} from '../core/config/load.js'
import type {GpuConfig} from '../core/config/schema.js'
import {localGpuUnits, publishedModel} from '../gpu/devices.js'
import {describeInventory, readGpuInventory, type GpuInventory} from '../gpu/inventory.js'
import type {CheckResult} from './doctor.js'

/** The backends that hand out this host's own GPUs (found by nvidia-smi); Proxmox passes through PCI devices instead. */
const LOCAL_GPU_BACKENDS = new Set(['docker'])

/**
 * `doctor`'s GPU line: what the driver reports and which devices `[gpu]` hands out, or, for Proxmox, the devices
 * passed through. A failing driver, or offerings that sell more GPUs per machine than the host can give one
 * contract, fail; a host without GPUs that sells none passes.
 */
export async function gpuCheck(loaded: LoadedConfig): Promise<CheckResult> {
  const {gpu, offerings, provisioner} = loaded.config
  const most = Math.max(0, ...offerings.map((offering) => offering.gpu_count))
  if (provisioner.type === 'proxmox') return passthroughCheck(gpu, most)
  const inventory = await readGpuInventory(gpu.nvidia_smi)
  const {units, notes} = localGpuUnits(inventory, gpu)
  const sells = offerings.filter((offering) => offering.gpu_count > 0)
  if (inventory.state === 'error') {
    return {name: 'gpu', status: sells.length > 0 || gpu.devices ? 'fail' : 'warn', message: describeInventory(inventory), remedy: 'check the NVIDIA driver: `nvidia-smi` must answer (reload the module, or reinstall a driver that matches the library)'}
  }
  const handsOut = LOCAL_GPU_BACKENDS.has(provisioner.type)
  const described = [describeInventory(inventory), ...(handsOut && units.length > 0 ? [`handed out: ${units.map((unit) => `${unit.label} (${unit.model})`).join(', ')}`] : []), ...notes].join('; ')
  if (most > 0 && handsOut && units.length < most) {
    return {name: 'gpu', status: 'fail', message: `an offering sells ${most} GPUs per machine and this host hands out ${units.length}: ${described}`, remedy: 'install the driver, fix [gpu] devices and mig, or sell fewer GPUs per machine'}
  }
  return {name: 'gpu', status: notes.length > 0 ? 'warn' : 'pass', message: described, ...(notes.length > 0 ? {remedy: 'see the notes: a GPU listed here is not handed out'} : {})}
}

function passthroughCheck(gpu: GpuConfig, most: number): CheckResult {
  const devices = gpu.passthrough.map((entry) => `${entry.mapping ? `mapping ${entry.mapping}` : `address ${entry.address}`} (${entry.model})`)
  const message = devices.length > 0 ? `passed through to VMs: ${devices.join(', ')}` : 'no PCI device is passed through ([gpu] passthrough is empty)'
  if (most > gpu.passthrough.length) {
    return {name: 'gpu', status: 'fail', message: `an offering sells ${most} GPUs per machine: ${message}`, remedy: 'run `outpost setup proxmox --gpus all` to map the host GPUs, or sell fewer GPUs per machine'}
  }
  return {name: 'gpu', status: 'pass', message}
}

/**
 * GPU offerings `init` suggests from the inventory: per model, one GPU with the host's CPU and memory shared evenly
 * among its GPUs. Returned as commented TOML, like the other examples in the config: prices are the operator's.
 */
export function suggestedGpuOfferings(inventory: GpuInventory, config: Pick<GpuConfig, 'models'>, host: {cpuCores: number; memoryMb: number}): {toml: string; names: string[]} {
  if (inventory.state !== 'ready') return {toml: '', names: []}
  const wholeGpus = inventory.gpus.filter((gpu) => gpu.migMode !== 'enabled')
  if (wholeGpus.length === 0) return {toml: '', names: []}
  const share = {cpu_cores: Math.max(1, Math.floor(host.cpuCores / wholeGpus.length)), memory_mb: Math.max(1024, Math.floor(host.memoryMb / wholeGpus.length / 1024) * 1024)}
  const models = [...new Set(wholeGpus.map((gpu) => gpu.name))]
  const names = models.map((name) => `gpu-1x-${slug(publishedModel(config, name))}`)
  const toml = models
    .map((model, index) =>
      [
        `# ${model}: ${wholeGpus.filter((gpu) => gpu.name === model).length} on this host (nvidia-smi); one per machine, with an even share of CPU and memory.`,
        '# [[offerings]]',
        `# name = "${names[index]}"`,
        '# product_type = "gpu"',
        `# cpu_cores = ${share.cpu_cores}`,
        `# memory_mb = ${share.memory_mb}`,
        '# storage_gb = 100',
        '# gpu_count = 1',
        '# price_per_hour = "<your price>"',
      ].join('\n'),
    )
    .join('\n\n')
  return {toml, names}
}

function slug(text: string): string {
  return (
    text
      .toLowerCase()
      .replace(/^nvidia\s+/, '')
      .replaceAll(/[^a-z0-9]+/g, '-')
      .replaceAll(/^-|-$/g, '')
      .slice(0, 48) || 'gpu'
  )
}
