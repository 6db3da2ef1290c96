import {isIPv4, isIPv6} from 'node:net'

/**
 * Parameter verification as Proxmox VE does it, for the routes the emulator serves. Sources read (pve-common at
 * f665029e, qemu-server at e6352be6, pve-http-server at 5c9e4ea7, all 2026):
 *
 * - pve-http-server src/PVE/APIServer/AnyEvent.pm `extract_params`: a PUT/POST body is JSON when its Content-Type is
 *   application/json, form-urlencoded otherwise; query parameters are merged over it.
 * - pve-common src/PVE/RESTHandler.pm `handle` → JSONSchema.pm `validate`: every error is collected per parameter and
 *   answered at once as `400 Parameter verification failed.` with `errors: {param: message}`.
 * - JSONSchema.pm `check_object`: a parameter the method doesn't define is "property is not defined in schema and the
 *   schema does not allow additional properties".
 * - JSONSchema.pm `check_type`: an integer is /^[+-]?\d+$/; a top-level boolean is the string '1' or '0' or a JSON
 *   true/false, nothing else over HTTP (`parse_boolean`'s on/off/yes/no/true/false is for the CLI and for keys inside
 *   property strings such as `agent=enabled=yes`).
 * - JSONSchema.pm `check_prop`: type, then format ("invalid format - ..."), pattern (anchored: "value does not match
 *   the regex pattern"), maxLength, minimum/maximum ("value must have a minimum value of N"), enum.
 * - Property strings (`parse_property_string`): comma-separated `key=value`, a default key, no unknown keys; an error
 *   reads "invalid format - format error\n<param>.<key>: <message>".
 * - Formats: `pve-vmid`, `pve-node`, `pve-storage-id` (parse_id), `dns-name`, `urlencoded`, `pve-tag-list`
 *   (ParseUtils.pm `split_list` on `,; ` and whitespace, each tag /^[a-z0-9_][a-z0-9_\-+.]*$/i), `pve-ipv4-config`
 *   (dhcp, manual or a CIDR with a prefix of 8 to 32), `ipv4`; qemu-server: `memory` ([current=]<integer>, at least
 *   16), `pve-qm-ipconfig` (ip, gw, ip6, gw6), `agent` ([enabled=]<bool>, fstrim_cloned_disks, freeze-fs, type).
 *
 * The emulator knows the parameters it lists here (those Outpost sends, and a few common ones); any other is refused
 * as PVE refuses an unknown one. A PVE parameter missing here is a gap in the emulator, not a refusal by PVE.
 */

export type RawValue = string | number | boolean

export interface Spec {
  type: 'integer' | 'boolean' | 'string' | 'number'
  minimum?: number
  maximum?: number
  maxLength?: number
  enum?: readonly string[]
  /** Anchored as PVE anchors it: ^(?:pattern)$ */
  pattern?: RegExp
  /** Returns the error text (without "invalid format - ") or undefined. */
  format?: (value: string, name: string) => string | undefined
}

/** A method's parameters: fixed names, and numbered families such as ipconfig0 … ipconfig31. */
export interface Schema {
  properties: Record<string, Spec>
  numbered?: Record<string, {count: number; spec: Spec}>
}

export class ParameterErrors extends Error {
  constructor(readonly errors: Record<string, string>) {
    super('Parameter verification failed.')
  }
}

const integer = (minimum?: number, maximum?: number): Spec => ({type: 'integer', minimum, maximum})
const boolean: Spec = {type: 'boolean'}
const string = (extra: Omit<Spec, 'type'> = {}): Spec => ({type: 'string', ...extra})

function typeError(spec: Spec, value: RawValue): string | undefined {
  if (typeof value === 'boolean') return spec.type === 'boolean' ? undefined : `type check ('${spec.type}') failed - got JSON::PP::Boolean`
  const text = String(value)
  if (spec.type === 'boolean' && text !== '1' && text !== '0') return `type check ('boolean') failed - got '${text}'`
  if (spec.type === 'integer' && !/^[+-]?\d+$/.test(text)) return `type check ('integer') failed - got '${text}'`
  if (spec.type === 'number' && !/^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$/.test(text)) return `type check ('number') failed - got '${text}'`
  return undefined
}

/** One value against its spec, in check_prop's order; undefined when it passes. */
export function checkValue(spec: Spec, value: RawValue, name: string): string | undefined {
  const wrongType = typeError(spec, value)
  if (wrongType) return wrongType
  const text = String(value)
  if (spec.format) {
    const invalid = spec.format(text, name)
    if (invalid) return `invalid format - ${invalid}`
  }
  if (spec.pattern && !new RegExp(`^(?:${spec.pattern.source})$`).test(text)) return 'value does not match the regex pattern'
  if (spec.maxLength !== undefined && text.length > spec.maxLength) return `value may only be ${spec.maxLength} characters long`
  if (/^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$/.test(text)) {
    if (spec.maximum !== undefined && Number(text) > spec.maximum) return `value must have a maximum value of ${spec.maximum}`
    if (spec.minimum !== undefined && Number(text) < spec.minimum) return `value must have a minimum value of ${spec.minimum}`
  }
  if (spec.enum && !spec.enum.includes(text)) return `value '${text}' does not have a value in the enumeration '${spec.enum.join(', ')}'`
  return undefined
}

/**
 * Verifies a method's parameters (path parameters already taken out) and returns them as PVE stores them: text, with
 * booleans as 1/0. Throws ParameterErrors with every failing parameter.
 */
export function verify(schema: Schema, params: Record<string, RawValue>): Record<string, string> {
  const errors: Record<string, string> = {}
  const result: Record<string, string> = {}
  for (const [name, value] of Object.entries(params)) {
    const spec = schema.properties[name] ?? numberedSpec(schema, name)
    if (!spec) {
      errors[name] = 'property is not defined in schema and the schema does not allow additional properties'
      continue
    }
    const error = checkValue(spec, value, name)
    if (error) errors[name] = error
    else result[name] = typeof value === 'boolean' ? (value ? '1' : '0') : String(value)
  }
  if (Object.keys(errors).length > 0) throw new ParameterErrors(errors)
  return result
}

function numberedSpec(schema: Schema, name: string): Spec | undefined {
  const match = /^([a-z]+)(\d+)$/.exec(name)
  const family = match ? schema.numbered?.[match[1] ?? ''] : undefined
  return family && Number(match?.[2]) < family.count ? family.spec : undefined
}

// --- property strings ---

export interface KeySpec extends Spec {
  defaultKey?: boolean
}

/** parse_property_string: unknown or duplicate keys and bad values are errors named `<param>.<key>`. */
export function propertyString(keys: Record<string, KeySpec>, requires: Record<string, string> = {}) {
  return (value: string, name: string): string | undefined => {
    const parsed: Record<string, string> = {}
    const errors: string[] = []
    for (const part of value.split(',')) {
      if (/^\s*$/.test(part)) continue
      const pair = /^([^=]+)=(.+)$/.exec(part)
      let key: string
      let item: string
      if (pair) {
        key = pair[1] ?? ''
        item = pair[2] ?? ''
        if (!keys[key]) return `invalid key in comma-separated list property: ${key}`
      } else if (!part.includes('=')) {
        const fallback = Object.entries(keys).find(([, spec]) => spec.defaultKey)
        if (!fallback) return 'value without key, but schema does not define a default key'
        key = fallback[0]
        item = part
      } else {
        return 'missing key in comma-separated list property'
      }
      if (parsed[key] !== undefined) return `duplicate key in comma-separated list property: ${key}`
      const spec = keys[key]
      // Inside a property string a boolean may be written 1/0, on/off, yes/no or true/false (parse_boolean).
      if (spec?.type === 'boolean') item = /^(1|on|yes|true)$/i.test(item) ? '1' : /^(0|off|no|false)$/i.test(item) ? '0' : item
      parsed[key] = item
    }
    for (const [key, item] of Object.entries(parsed)) {
      const spec = keys[key]
      const error = spec ? checkValue(spec, item, `${name}.${key}`) : undefined
      if (error) errors.push(`${name}.${key}: ${error}`)
      const required = requires[key]
      if (required && parsed[required] === undefined) errors.push(`${name}.${required}: missing property required by '${name}.${key}'`)
    }
    return errors.length > 0 ? `format error\n${errors.join('\n')}\n` : undefined
  }
}

// --- formats ---

const DNS_LABEL = '[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?'
const dnsName = (value: string) => (new RegExp(`^(${DNS_LABEL}\\.)*${DNS_LABEL}$`).test(value) ? undefined : 'value does not look like a valid DNS name')
const nodeName = (value: string) => (new RegExp(`^${DNS_LABEL}$`).test(value) ? undefined : 'value does not look like a valid node name')
const vmid = (value: string) => (/^[1-9][0-9]{2,8}$/.test(value) ? undefined : 'value does not look like a valid VM ID')
const urlencoded = (value: string) => (/^[-%a-zA-Z0-9_.!~*'()]*$/.test(value) ? undefined : `invalid urlencoded string: ${value}`)

function storageId(value: string): string | undefined {
  if (value.length < 2) return `storage ID '${value}' cannot be shorter than 2 characters`
  return /^[a-z][a-z0-9\-_.]*[a-z0-9]$/i.test(value) ? undefined : `storage ID '${value}' contains illegal characters`
}

/** split_list: `,` `;` and whitespace separate; every tag must be a pve-tag. */
function tagList(value: string): string | undefined {
  for (const tag of value.replaceAll(/[,;]/g, ' ').trim().split(/\s+/).filter(Boolean)) {
    if (!/^[a-z0-9_][a-z0-9_\-+.]*$/i.test(tag)) return 'invalid characters in tag'
  }
  return undefined
}

function cidrV4(value: string): boolean {
  const match = /^(.+)\/(\d+)$/.exec(value)
  return match !== null && isIPv4(match[1] ?? '') && Number(match[2]) > 7 && Number(match[2]) <= 32
}

function cidrV6(value: string): boolean {
  const match = /^(.+)\/(\d+)$/.exec(value)
  return match !== null && isIPv6(match[1] ?? '') && Number(match[2]) > 7 && Number(match[2]) <= 128
}

const ipv4Config = (value: string) => (/^(dhcp|manual)$/.test(value) || cidrV4(value) ? undefined : 'value does not look like a valid ipv4 network configuration')
const ipv6Config = (value: string) => (/^(auto|dhcp|manual)$/.test(value) || cidrV6(value) ? undefined : 'value does not look like a valid ipv6 network configuration')
const ipv4 = (value: string) => (isIPv4(value) ? undefined : 'value does not look like a valid IPv4 address')
const ipv6 = (value: string) => (isIPv6(value) ? undefined : 'value does not look like a valid IPv6 address')

/** qemu-server src/PVE/QemuServer/Network.pm $ipconfig_fmt; `gw` requires `ip`. */
const ipconfig = propertyString(
  {ip: string({format: ipv4Config}), gw: string({format: ipv4}), ip6: string({format: ipv6Config}), gw6: string({format: ipv6})},
  {gw: 'ip', gw6: 'ip6'},
)

/** qemu-server src/PVE/QemuServer/Memory.pm $memory_fmt. */
const memory = propertyString({current: {...integer(16), defaultKey: true}})

/** qemu-server src/PVE/QemuServer/Agent.pm $agent_fmt. */
const agent = propertyString({
  enabled: {...boolean, defaultKey: true},
  fstrim_cloned_disks: boolean,
  'freeze-fs': boolean,
  'freeze-fs-on-backup': boolean,
  type: string({enum: ['virtio', 'isa']}),
})

const PCI = '(?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\\.[a-f0-9])?'
const hexId: Spec = string({pattern: /0x[0-9a-fA-F]{4}/})
const configId = (value: string) => (/^[a-z][a-z0-9_-]+$/i.test(value) ? undefined : `invalid configuration ID '${value}'`)

/** qemu-server src/PVE/QemuServer/PCI.pm $hostpci_fmt (host is the default key; host or mapping is checked later). */
const hostpci = propertyString({
  host: {...string({pattern: new RegExp(`${PCI}(;${PCI})*`)}), defaultKey: true},
  mapping: string({format: configId}),
  rombar: boolean,
  romfile: string({pattern: /[^,;]+/}),
  pcie: boolean,
  'x-vga': boolean,
  'legacy-igd': boolean,
  mdev: string({pattern: /[^/.:]+/}),
  'vendor-id': hexId,
  'device-id': hexId,
  'sub-vendor-id': hexId,
  'sub-device-id': hexId,
})

const DRIVES = [
  ...Array.from({length: 4}, (_, index) => `ide${index}`),
  ...Array.from({length: 6}, (_, index) => `sata${index}`),
  ...Array.from({length: 31}, (_, index) => `scsi${index}`),
  ...Array.from({length: 16}, (_, index) => `virtio${index}`),
  'efidisk0',
  'tpmstate0',
]

// --- method schemas (path parameters taken out) ---

/** `PUT /nodes/{node}/qemu/{vmid}/config` (update_vm: json_config_properties plus its own options). */
export const UPDATE_VM_CONFIG: Schema = {
  properties: {
    cores: integer(1),
    sockets: integer(1),
    vcpus: integer(1),
    memory: string({format: memory}),
    balloon: integer(0),
    name: string({format: dnsName}),
    description: string({maxLength: 8192}),
    onboot: boolean,
    protection: boolean,
    numa: boolean,
    tags: string({format: tagList}),
    agent: string({format: agent}),
    ciuser: string(),
    cipassword: string(),
    ciupgrade: boolean,
    citype: string({enum: ['configdrive2', 'nocloud', 'opennebula']}),
    sshkeys: string({format: urlencoded}),
    nameserver: string(),
    searchdomain: string(),
    delete: string(),
    revert: string(),
    digest: string({maxLength: 64}),
    skiplock: boolean,
    force: boolean,
    background_delay: integer(1, 30),
    machine: string({pattern: /(pc|pc(-i440fx)?-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|q35|pc-q35-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|virt(?:-\d+(\.\d+)+)?(\+pve\d+)?)/}),
  },
  // qemu-server's MAX_NETS: ipconfig0 … ipconfig31; PCI.pm's MAX_HOSTPCI_DEVICES: hostpci0 … hostpci15.
  numbered: {ipconfig: {count: 32, spec: string({format: ipconfig})}, hostpci: {count: 16, spec: string({format: hostpci})}},
}

/** `POST /nodes/{node}/qemu/{vmid}/clone` (clone_vm). */
export const CLONE_VM: Schema = {
  properties: {
    newid: {...integer(100, 999_999_999), format: vmid},
    name: string({format: dnsName}),
    description: string(),
    pool: string(),
    snapname: string(),
    storage: string({format: storageId}),
    format: string({enum: ['raw', 'qcow2', 'vmdk']}),
    full: boolean,
    target: string({format: nodeName}),
    bwlimit: integer(0),
  },
}

/** `PUT /nodes/{node}/qemu/{vmid}/resize` (resize_vm). */
export const RESIZE_VM: Schema = {
  properties: {
    disk: string({enum: DRIVES}),
    size: string({pattern: /\+?\d+(\.\d+)?[KMGT]?/}),
    digest: string({maxLength: 40}),
    skiplock: boolean,
  },
}

export const START_VM: Schema = {properties: {skiplock: boolean, timeout: integer(0, 86_400), machine: string(), 'force-cpu': string()}}
export const STOP_VM: Schema = {properties: {skiplock: boolean, timeout: integer(0), keepActive: boolean, 'overrule-shutdown': boolean}}
export const SHUTDOWN_VM: Schema = {properties: {skiplock: boolean, timeout: integer(0), forceStop: boolean, keepActive: boolean}}
export const DESTROY_VM: Schema = {properties: {skiplock: boolean, purge: boolean, 'destroy-unreferenced-disks': boolean}}
export const NEXT_ID: Schema = {properties: {vmid: {...integer(100, 999_999_999), format: vmid}}}
export const CLUSTER_RESOURCES: Schema = {properties: {type: string({enum: ['vm', 'storage', 'node', 'sdn']})}}
export const TASK_LOG: Schema = {properties: {start: integer(0), limit: integer(0), download: boolean}}
export const TASK_LIST: Schema = {properties: {start: integer(0), limit: integer(0), vmid: integer(100), typefilter: string(), userfilter: string(), source: string({enum: ['archive', 'active', 'all']}), errors: boolean, since: integer(), until: integer(), statusfilter: string()}}
export const VM_CONFIG: Schema = {properties: {current: boolean, snapshot: string()}}
export const NO_PARAMETERS: Schema = {properties: {}}
