import {z} from 'zod'

import {ExitCode, UserError} from '../../core/errors.js'
import type {RemoteHost} from './remote.js'

/**
 * The wizard's GPU step: find the host's NVIDIA GPUs, give each a PCI resource mapping (Datacenter → Resource
 * Mappings, PVE 8), and return the `[gpu] passthrough` entries. The agent's token can pass a GPU through only by its
 * mapping: PVE refuses a raw `hostpci` address to anyone but root@pam with a password (qemu-server API2/Qemu.pm
 * check_hostpci_perm).
 *
 * What is read, all without changing anything:
 * - `pvesh get /nodes/<node>/hardware/pci` (pve-manager API2/Hardware/PCI.pm over PVE::SysFSTools::lspci): each
 *   device's address, class, vendor and device ids, subsystem ids, names from pci.ids, and its IOMMU group (-1 when
 *   the IOMMU is off), as PVE itself sees them when it checks a mapping.
 * - `lspci -Dnnk -d 10de:` (pciutils): the kernel driver each NVIDIA function is bound to (`Kernel driver in use:`).
 * Mappings are read with `pvesh get /cluster/mapping/pci`, and made or corrected with `pvesh create|set`, their map
 * entry as pve-guest-common PVE/Mapping/PCI.pm's $map_fmt reads it: node, path, id, iommugroup, subsystem-id.
 */

const NVIDIA = '0x10de'
/** PCI classes of GPUs: VGA compatible controller (0300), 3D controller (0302). */
const GPU_CLASSES = /^0x030[02]/

const hex4 = z.string().regex(/^0x[0-9a-f]{4}$/i)
export const PciDeviceList = z.array(
  z.looseObject({
    id: z.string().regex(/^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]$/i),
    class: z.string(),
    vendor: hex4,
    device: hex4,
    subsystem_vendor: hex4.nullish(),
    subsystem_device: hex4.nullish(),
    iommugroup: z.number().int(),
    vendor_name: z.string().nullish(),
    device_name: z.string().nullish(),
  }),
)
export const MappingList = z.array(z.looseObject({id: z.string(), map: z.array(z.string()).nullish()}))

export interface HostGpu {
  /** 0000:01:00.0 */
  address: string
  /** The mapping path: the whole device (no function) when it has other functions (a GPU's audio), else the address. */
  path: string
  vendorDevice: string
  subsystem?: string
  iommugroup: number
  /** The model to publish: the bracketed name of pci.ids (`GH100 [H100 PCIe]` → `H100 PCIe`), else its whole name. */
  model: string
  driver?: string
}

export interface GpuPassthroughEntry {
  mapping: string
  model: string
  pcie: boolean
}

export interface GpuStepResult {
  gpus: (HostGpu & {mapping: string; status: 'created' | 'updated' | 'unchanged'})[]
  passthrough: GpuPassthroughEntry[]
  /** What the operator should know: a GPU held by a host driver, an IOMMU group shared with other devices. */
  notes: string[]
}

/** `Kernel driver in use:` of each function in `lspci -Dnnk` output. */
export function parseLspciDrivers(text: string): Map<string, string> {
  const drivers = new Map<string, string>()
  let current: string | undefined
  for (const line of text.split('\n')) {
    const device = /^([0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]) /i.exec(line)
    if (device) {
      current = device[1]!.toLowerCase()
      continue
    }
    const driver = /^\s+Kernel driver in use: (\S+)/.exec(line)
    if (driver && current) drivers.set(current, driver[1]!)
  }
  return drivers
}

export function modelName(deviceName: string | null | undefined, vendorDevice: string): string {
  const bracketed = /\[([^\]]+)\]\s*$/.exec(deviceName ?? '')?.[1]
  return (bracketed ?? deviceName ?? `NVIDIA ${vendorDevice}`).trim().slice(0, 64)
}

/** The host's NVIDIA GPUs, from PVE's PCI list and lspci's driver bindings. */
export function hostGpus(devices: z.infer<typeof PciDeviceList>, drivers: ReadonlyMap<string, string>): HostGpu[] {
  const base = (address: string) => address.toLowerCase().replace(/\.[0-9a-f]$/, '')
  return devices
    .filter((device) => device.vendor.toLowerCase() === NVIDIA && GPU_CLASSES.test(device.class))
    .map((device) => {
      const address = device.id.toLowerCase()
      const siblings = devices.filter((other) => other.id.toLowerCase() !== address && base(other.id) === base(address))
      const vendorDevice = `${device.vendor.slice(2)}:${device.device.slice(2)}`.toLowerCase()
      const driver = drivers.get(address)
      return {
        address,
        path: siblings.length > 0 ? base(address) : address,
        vendorDevice,
        ...(device.subsystem_vendor && device.subsystem_device ? {subsystem: `${device.subsystem_vendor.slice(2)}:${device.subsystem_device.slice(2)}`.toLowerCase()} : {}),
        iommugroup: device.iommugroup,
        model: modelName(device.device_name, vendorDevice),
        ...(driver ? {driver} : {}),
      }
    })
}

/** `outpost-gpu-0000-01-00`: a pve-configid from the device's address, the same on every run. */
export function mappingId(gpu: Pick<HostGpu, 'address'>): string {
  return `outpost-gpu-${gpu.address.replace(/\.[0-9a-f]$/, '').replaceAll(':', '-')}`
}

export function mapEntry(node: string, gpu: HostGpu): string {
  return [`node=${node}`, `path=${gpu.path}`, `id=${gpu.vendorDevice}`, `iommugroup=${gpu.iommugroup}`, ...(gpu.subsystem ? [`subsystem-id=${gpu.subsystem}`] : [])].join(',')
}

function parseJson<S extends z.ZodType>(command: string, output: string, schema: S): z.infer<S> {
  let raw: unknown
  try {
    raw = JSON.parse(output)
  } catch {
    throw new UserError(`could not read the output of \`${command}\`: not JSON ("${output.trim().slice(0, 80)}")`, {code: 'unexpected_output'})
  }
  const parsed = schema.safeParse(raw)
  if (!parsed.success) throw new UserError(`could not read the output of \`${command}\`: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}`, {code: 'unexpected_output'})
  return parsed.data
}

/** Which GPUs `--gpus` names: `all`, or PCI addresses (with or without the 0000: domain). */
export function selectGpus(all: readonly HostGpu[], answer: string): HostGpu[] {
  if (answer.trim() === 'all') return [...all]
  const wanted = answer
    .split(',')
    .map((item) => item.trim().toLowerCase())
    .filter(Boolean)
    .map((item) => (/^[0-9a-f]{2}:[0-9a-f]{2}/.test(item) ? `0000:${item}` : item))
    .map((item) => (/\.[0-9a-f]$/.test(item) ? item : `${item}.0`))
  const unknown = wanted.filter((address) => !all.some((gpu) => gpu.address === address))
  if (unknown.length > 0) {
    throw new UserError(`--gpus names ${unknown.join(', ')}, which is not an NVIDIA GPU of this host (it has: ${all.map((gpu) => gpu.address).join(', ') || 'none'})`, {
      code: 'invalid_flag',
      exit: ExitCode.usage,
      suggestion: 'pass --gpus all, or addresses from `lspci -D -d 10de:`',
    })
  }
  return all.filter((gpu) => wanted.includes(gpu.address))
}

/** Finds the GPUs `answer` names, maps each (made or corrected only when needed) and returns the passthrough entries. */
export async function mapGpus(remote: RemoteHost, node: string, answer: string): Promise<GpuStepResult> {
  const listCommand = ['pvesh', 'get', `/nodes/${node}/hardware/pci`, '--output-format', 'json']
  const devices = parseJson(listCommand.join(' '), await remote.mustRead(listCommand, 'listing the PCI devices'), PciDeviceList)
  const lspci = await remote.read(['lspci', '-Dnnk', '-d', '10de:'])
  const gpus = selectGpus(hostGpus(devices, parseLspciDrivers(lspci.code === 0 ? lspci.stdout : '')), answer)
  if (gpus.length === 0) throw new UserError('this host has no NVIDIA GPU to pass through (`pvesh get /nodes/<node>/hardware/pci` lists none)', {code: 'no_gpu', suggestion: 'run without --gpus'})
  const off = gpus.filter((gpu) => gpu.iommugroup < 0)
  if (off.length > 0) {
    throw new UserError(`the IOMMU is off: ${off.map((gpu) => gpu.address).join(', ')} has no IOMMU group, so it can't be passed through`, {
      code: 'iommu_off',
      suggestion: 'enable VT-d/AMD-Vi in the firmware, add intel_iommu=on (Intel) to the kernel command line, reboot, and run again',
    })
  }
  const notes: string[] = []
  for (const gpu of gpus) {
    if (gpu.driver !== undefined && gpu.driver !== 'vfio-pci') {
      notes.push(`${gpu.address} is bound to ${gpu.driver}: PVE rebinds it to vfio-pci when a VM starts, which fails while the host uses it; bind it to vfio-pci at boot (options vfio-pci ids=${gpu.vendorDevice})`)
    }
    const shared = devices.filter((device) => device.iommugroup === gpu.iommugroup && !device.id.toLowerCase().startsWith(gpu.address.replace(/\.[0-9a-f]$/, '')))
    if (shared.length > 0) notes.push(`${gpu.address} shares IOMMU group ${gpu.iommugroup} with ${shared.map((device) => device.id).join(', ')}: those go to the VM too`)
  }
  const mappingsCommand = ['pvesh', 'get', '/cluster/mapping/pci', '--output-format', 'json']
  const existing = parseJson(mappingsCommand.join(' '), await remote.mustRead(mappingsCommand, 'listing the PCI mappings'), MappingList)
  const mapped: GpuStepResult['gpus'] = []
  for (const gpu of gpus) {
    const id = mappingId(gpu)
    const entry = mapEntry(node, gpu)
    const found = existing.find((mapping) => mapping.id === id)
    // Entries for other nodes of the cluster stay; this node's is set to what the hardware says.
    const others = (found?.map ?? []).filter((item) => !item.split(',').includes(`node=${node}`))
    const wanted = [...others, entry]
    let status: 'created' | 'updated' | 'unchanged' = 'unchanged'
    if (!found) {
      await remote.change(['pvesh', 'create', '/cluster/mapping/pci', '--id', id, '--map', entry, '--description', `${gpu.model} (outpost)`], `mapping ${gpu.address} as ${id}`)
      status = 'created'
    } else if ((found.map ?? []).join('\n') !== wanted.join('\n')) {
      await remote.change(['pvesh', 'set', `/cluster/mapping/pci/${id}`, ...wanted.flatMap((item) => ['--map', item])], `correcting mapping ${id}`)
      status = 'updated'
    }
    mapped.push({...gpu, mapping: id, status})
  }
  return {gpus: mapped, passthrough: mapped.map((gpu) => ({mapping: gpu.mapping, model: gpu.model, pcie: true})), notes}
}

/** `passthrough = [...]` in [gpu] as TOML inline tables, replacing what was there (the section made when missing). */
export function withPassthrough(text: string, entries: readonly GpuPassthroughEntry[]): string {
  const value = `[${entries.map((entry) => `{mapping = ${JSON.stringify(entry.mapping)}, model = ${JSON.stringify(entry.model)}, pcie = ${entry.pcie}}`).join(', ')}]`
  const lines = text.split('\n')
  const header = lines.findIndex((line) => line.trim() === '[gpu]')
  if (header === -1) return [...lines, '', '[gpu]', '# Made by `outpost setup proxmox --gpus`: one PCI resource mapping per GPU.', `passthrough = ${value}`, ''].join('\n')
  let end = lines.findIndex((line, index) => index > header && /^\s*\[/.test(line))
  if (end === -1) end = lines.length
  const existing = lines.findIndex((line, index) => index > header && index < end && /^\s*passthrough\s*=/.test(line))
  const updated = [...lines]
  if (existing === -1) updated.splice(header + 1, 0, `passthrough = ${value}`)
  else updated[existing] = `passthrough = ${value}`
  return updated.join('\n')
}
