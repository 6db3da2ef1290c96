import {ParameterErrors, propertyString, verify, type RawValue, type Spec} from './parameters.js'

/**
 * PCI passthrough as Proxmox VE 8 does it, for the emulator: the cluster-wide PCI resource mappings
 * (`/cluster/mapping/pci`, pve-manager PVE/API2/Cluster/Mapping/PCI.pm, the `map` entries of pve-guest-common
 * PVE/Mapping/PCI.pm) and the `hostpci<n>` options of a VM (qemu-server PVE/QemuServer/PCI.pm `$hostpci_fmt`,
 * `parse_hostpci`, `parse_hostpci_devices`, `reserve_pci_usage`; API2/Qemu.pm `check_hostpci_perm`). What is checked
 * where, as there:
 *
 * - setting `hostpci<n>`: its property string (host or mapping, rombar, pcie, x-vga, …); a raw `host=` address is
 *   refused to anyone but root@pam ("only root can set 'hostpci0' config for non-mapped devices", 500), and an API
 *   token is never root@pam; a mapping needs `Mapping.Use` on /mapping/pci/<id> (the emulator's token has every
 *   privilege, so that check always passes here).
 * - starting the VM (in the start task): both host and mapping, a mapping unknown or with no entry for the node, a
 *   mapping whose vendor:device no longer matches the hardware, `pcie=1` without the q35 machine, and a device already
 *   used by another running VM fail the task with PVE's messages.
 */

export interface EmulatedPciDevice {
  node: string
  /** 0000:01:00.0 */
  path: string
  /** vendor:device, like 10de:2331 */
  id: string
  iommugroup: number
  subsystemId?: string
}

export interface PciMapping {
  id: string
  description?: string
  map: string[]
}

/** A refusal the emulator answers with this status and message in the status line. */
export class PciError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

const MAP_PCI = '[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:\\.[a-f0-9])?'
const CONFIG_ID = /^[a-z][a-z0-9_-]+$/i
const configId = (value: string) => (CONFIG_ID.test(value) ? undefined : `invalid configuration ID '${value}'`)
const bool: Spec = {type: 'boolean'}

/** Mapping/PCI.pm $map_fmt. */
const mapFormat = propertyString({
  node: {type: 'string', pattern: /[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?/},
  id: {type: 'string', pattern: /[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}/},
  'subsystem-id': {type: 'string', pattern: /[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}/},
  path: {type: 'string', pattern: new RegExp(`(?:${MAP_PCI};)*${MAP_PCI}`)},
  iommugroup: {type: 'integer'},
  description: {type: 'string', maxLength: 4096},
})

/** `key=value,...` into an object (the value already passed its format). */
export function properties(text: string, defaultKey?: string): Record<string, string> {
  const result: Record<string, string> = {}
  for (const part of text.split(',')) {
    if (part.trim() === '') continue
    const pair = /^([^=]+)=(.*)$/.exec(part)
    if (pair) result[pair[1]!] = pair[2]!
    else if (defaultKey) result[defaultKey] = part
  }
  return result
}

const truthy = (value: string | undefined) => value !== undefined && /^(1|on|yes|true)$/i.test(value)

export class PciPassthrough {
  readonly mappings = new Map<string, PciMapping>()

  constructor(readonly devices: EmulatedPciDevice[]) {}

  /** `/cluster/mapping/pci[/{id}]`; undefined for any other path. */
  route(method: string, parts: string[], raw: Record<string, RawValue>): unknown {
    const [, second, third, id] = parts
    if (second !== 'mapping') return undefined
    if (third === undefined && method === 'GET') return [{name: 'dir'}, {name: 'pci'}, {name: 'usb'}]
    if (third !== 'pci') return undefined
    if (id === undefined && method === 'GET') {
      const {'check-node': checkNode} = verify({properties: {'check-node': {type: 'string'}}}, raw)
      return [...this.mappings.values()].map((mapping) => ({...mapping, digest: 'd1', ...(checkNode ? {checks: this.checks(mapping, checkNode)} : {})}))
    }
    if (id === undefined && method === 'POST') return this.create(raw)
    if (id !== undefined && parts.length === 4) {
      if (configId(id)) throw new ParameterErrors({id: `invalid format - ${configId(id)}`})
      if (method === 'GET') {
        const mapping = this.mappings.get(id)
        if (!mapping) throw new PciError(500, `mapping '${id}' not found`)
        return {...mapping, digest: 'd1'}
      }
      if (method === 'DELETE') {
        this.mappings.delete(id)
        return null
      }
    }
    return undefined
  }

  private create(raw: Record<string, RawValue>): null {
    // A JSON body's array arrives as its JSON text (parseBody keeps one value per key).
    const map = raw.map === undefined ? [] : String(raw.map).startsWith('[') ? (JSON.parse(String(raw.map)) as unknown[]).map(String) : [String(raw.map)]
    const {map: _map, ...rest} = raw
    const params = verify({properties: {id: {type: 'string', format: configId}, description: {type: 'string', maxLength: 4096}, mdev: bool}}, rest)
    const errors: Record<string, string> = {}
    if (params.id === undefined) errors.id = 'property is missing and it is not optional'
    map.forEach((entry, index) => {
      const invalid = mapFormat(entry, 'map')
      if (invalid) errors[`map[${index}]`] = `invalid format - ${invalid}`
    })
    if (Object.keys(errors).length > 0) throw new ParameterErrors(errors)
    const id = params.id!
    if (this.mappings.has(id)) throw new PciError(500, `create hardware mapping failed: pci ID '${id}' already defined`)
    this.mappings.set(id, {id, map, ...(params.description ? {description: params.description} : {})})
    return null
  }

  /** Mapping.pm assert_valid, as the index reports it with check-node. */
  private checks(mapping: PciMapping, node: string): {severity: string; message: string}[] {
    const entries = this.entriesOn(mapping, node)
    if (entries.length === 0) return [{severity: 'warning', message: `No mapping for node ${node}.`}]
    return entries.flatMap((entry) => {
      const invalid = this.invalid(mapping.id, entry, node)
      return invalid ? [{severity: 'error', message: `Invalid configuration: ${invalid}`}] : []
    })
  }

  private entriesOn(mapping: PciMapping, node: string): Record<string, string>[] {
    return mapping.map.map((entry) => properties(entry)).filter((entry) => entry.node === node)
  }

  private invalid(name: string, entry: Record<string, string>, node: string): string | undefined {
    for (const path of (entry.path ?? '').split(';')) {
      const full = /\.[a-f0-9]$/i.test(path) ? path : `${path}.0`
      const device = this.devices.find((item) => item.node === node && item.path === full)
      if (!device) return `pci device '${full}' not found`
      if (entry.id !== device.id) return `'id' does not match for '${name}' (${device.id} != ${entry.id})`
    }
    return undefined
  }

  /** Before an update is written: check_hostpci_perm for each hostpci<n> (the token is never root@pam). */
  checkUpdate(params: Record<string, string>): void {
    for (const [key, value] of Object.entries(params)) {
      if (!/^hostpci\d+$/.test(key)) continue
      const device = properties(value, 'host')
      if (device.host) throw new PciError(500, `only root can set '${key}' config for non-mapped devices`)
      if (!device.mapping) throw new PciError(500, "either 'host' or 'mapping' must be set.")
    }
  }

  /**
   * In the start task: the devices of the VM's hostpci<n> on its node, or the error that fails the start. `busy` are
   * the devices other running VMs hold, by path.
   */
  devicesForStart(vmid: number, node: string, config: Record<string, string | number>, busy: ReadonlyMap<string, number>): {paths: string[]} | {error: string} {
    const q35 = /q35/.test(String(config.machine ?? ''))
    const paths: string[] = []
    for (let index = 0; index < 16; index++) {
      const value = config[`hostpci${index}`]
      if (value === undefined) continue
      const device = properties(String(value), 'host')
      if (device.host !== undefined && device.mapping !== undefined) return {error: "Cannot set both 'host' and 'mapping'."}
      let chosen: string[]
      if (device.mapping !== undefined) {
        const mapping = this.mappings.get(device.mapping)
        const entries = mapping ? this.entriesOn(mapping, node) : []
        if (!mapping || entries.length === 0) return {error: `PCI device mapping not found for '${device.mapping}'`}
        const invalid = entries.map((entry) => this.invalid(device.mapping!, entry, node)).find(Boolean)
        if (invalid) return {error: `PCI device mapping invalid (hardware probably changed): ${invalid}`}
        // Several entries on one node are alternatives: the first one free is taken.
        const free = entries.map((entry) => (entry.path ?? '').split(';').map(fullPath)).find((candidate) => candidate.every((path) => !busy.has(path) && !paths.includes(path)))
        chosen = free ?? entries[0]!.path!.split(';').map(fullPath)
      } else if (device.host !== undefined) {
        chosen = device.host.split(';').map((path) => fullPath(path.includes(':') && path.split(':').length === 2 ? `0000:${path}` : path))
      } else {
        return {error: "Either 'host' or 'mapping' must be set."}
      }
      if (!q35 && truthy(device.pcie)) return {error: 'q35 machine model is not enabled'}
      for (const path of chosen) {
        if (!this.devices.some((item) => item.node === node && item.path === path)) return {error: `no PCI device found for '${path}'`}
        const holder = busy.get(path)
        if (holder !== undefined && holder !== vmid) return {error: `PCI device '${path}' already in use by VMID '${holder}'`}
        if (paths.includes(path)) return {error: `device '${path}' assigned more than once`}
        paths.push(path)
      }
    }
    return {paths}
  }
}

function fullPath(path: string): string {
  return /\.[a-f0-9]$/i.test(path) ? path : `${path}.0`
}
