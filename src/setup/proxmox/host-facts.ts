import {z} from 'zod'

import {ExitCode, UserError} from '../../core/errors.js'
import type {RemoteHost} from './remote.js'

/**
 * What the wizard reads from the host before it changes anything, and the parsers of each tool's output. Every
 * parser names the tool and what it could not read, so a changed output format is a clear error, never a guess.
 */

export interface PveVersion {
  /** `8.2.4` */
  version: string
  major: number
}

export interface StorageInfo {
  name: string
  type: string
  availableGb: number
}

export interface ExistingVm {
  vmid: number
  name: string
}

export interface HostFacts {
  pve: PveVersion
  node: string
  storages: StorageInfo[]
  bridges: string[]
  vms: ExistingVm[]
  /** SHA-256 of the certificate pveproxy serves, `AB:CD:...`. */
  tlsFingerprint: string
}

function unreadable(tool: string, problem: string): UserError {
  return new UserError(`could not read the output of \`${tool}\`: ${problem}`, {
    code: 'unexpected_output',
    exit: ExitCode.failed,
    suggestion: 'is this a supported Proxmox VE release (7 or later)? Run the command on the host to see its output',
  })
}

/** `pve-manager/8.2.4/faa83925c9641325 (running kernel: 6.8.12-1-pve)` */
export function parsePveVersion(output: string): PveVersion {
  const match = /^pve-manager\/((\d+)\.\d+(?:\.\d+)?)\//m.exec(output.trim())
  if (!match?.[1] || !match[2]) throw unreadable('pveversion', `expected "pve-manager/<version>/...", got "${output.trim().slice(0, 80)}"`)
  return {version: match[1], major: Number(match[2])}
}

/** The node name Proxmox uses: the host name up to its first dot. */
export function parseNodeName(output: string): string {
  const name = output.trim().split('.')[0] ?? ''
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/.test(name)) throw unreadable('hostname', `"${output.trim()}" is not a host name`)
  return name
}

/**
 * `pvesm status` prints a table (sizes in KiB):
 * `Name  Type  Status  Total  Used  Available  %`. Only active storages are returned.
 */
export function parsePvesmStatus(output: string): StorageInfo[] {
  const lines = output.split('\n').filter((line) => line.trim() !== '')
  const header = lines[0]?.trim().split(/\s+/) ?? []
  if (header[0] !== 'Name' || header[1] !== 'Type' || header[2] !== 'Status' || header[5] !== 'Available') {
    throw unreadable('pvesm status', `expected the header "Name Type Status Total Used Available %", got "${lines[0] ?? ''}"`)
  }
  return lines.slice(1).flatMap((line, index) => {
    const [name, type, status, , , available] = line.trim().split(/\s+/)
    if (!name || !type || !status || available === undefined || !/^\d+$/.test(available)) {
      throw unreadable('pvesm status', `row ${index + 1} "${line.trim()}" does not have name, type, status and sizes`)
    }
    return status === 'active' ? [{name, type, availableGb: Math.floor(Number(available) / 1024 ** 2)}] : []
  })
}

const IpLinks = z.array(z.looseObject({ifname: z.string().min(1)}))

/** `ip -json link show type bridge` */
export function parseBridges(output: string): string[] {
  let raw: unknown
  try {
    raw = JSON.parse(output.trim() || '[]')
  } catch {
    throw unreadable('ip -json link show type bridge', 'not JSON')
  }
  const parsed = IpLinks.safeParse(raw)
  if (!parsed.success) throw unreadable('ip -json link show type bridge', `expected a list of links with "ifname" (${parsed.error.issues[0]?.message ?? 'invalid'})`)
  return parsed.data.map((link) => link.ifname).sort()
}

/** `qm list`: `VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID`, or nothing at all when the host has no VM. */
export function parseQmList(output: string): ExistingVm[] {
  const lines = output.split('\n').filter((line) => line.trim() !== '')
  if (lines.length === 0) return []
  const header = lines[0]?.trim().split(/\s+/) ?? []
  if (header[0] !== 'VMID' || header[1] !== 'NAME') throw unreadable('qm list', `expected the header "VMID NAME STATUS ...", got "${lines[0] ?? ''}"`)
  return lines.slice(1).map((line) => {
    const [vmid, name] = line.trim().split(/\s+/)
    if (!vmid || !/^\d+$/.test(vmid) || !name) throw unreadable('qm list', `row "${line.trim()}" has no VMID and name`)
    return {vmid: Number(vmid), name}
  })
}

/** `qm config <vmid>`: `key: value` lines. */
export function parseQmConfig(output: string): Record<string, string> {
  const config: Record<string, string> = {}
  for (const line of output.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue
    const match = /^([a-z][a-z0-9_-]*):\s?(.*)$/.exec(line)
    if (!match?.[1]) throw unreadable('qm config', `line "${line}" is not "key: value"`)
    config[match[1]] = match[2] ?? ''
  }
  return config
}

/** `qm importdisk` ends with `Successfully imported disk as 'unused0:local-lvm:vm-9000-disk-0'`. */
export function parseImportedVolume(output: string): string {
  const match = /imported disk as '(?:unused\d+:)?([^']+)'/.exec(output)
  if (!match?.[1]) throw unreadable('qm importdisk', 'no "Successfully imported disk as \'...\'" line')
  return match[1]
}

/** `openssl x509 -noout -fingerprint -sha256` prints `sha256 Fingerprint=AB:CD:...` (SHA256 in OpenSSL 1.1). */
export function parseOpensslFingerprint(output: string): string {
  const match = /^sha256 Fingerprint=((?:[0-9A-F]{2}:){31}[0-9A-F]{2})\s*$/im.exec(output.trim())
  if (!match?.[1]) throw unreadable('openssl x509 -fingerprint -sha256', `expected "sha256 Fingerprint=AB:CD:...", got "${output.trim().slice(0, 100)}"`)
  return match[1].toUpperCase()
}

/** pveproxy serves pveproxy-ssl.pem when an operator installed one, and the cluster-signed pve-ssl.pem otherwise. */
const CUSTOM_CERTIFICATE = '/etc/pve/local/pveproxy-ssl.pem'
const DEFAULT_CERTIFICATE = '/etc/pve/local/pve-ssl.pem'

/** Reads everything the wizard's choices and plan depend on; changes nothing. */
export async function readHostFacts(host: RemoteHost): Promise<HostFacts> {
  const version = await host.read(['pveversion'])
  if (version.code !== 0) {
    throw new UserError('this host is not Proxmox VE: `pveversion` is missing or failed', {
      code: 'not_proxmox',
      exit: ExitCode.failed,
      suggestion: 'point --host at a Proxmox VE node (the wizard runs qm and pveum there)',
    })
  }
  const pve = parsePveVersion(version.stdout)
  const node = parseNodeName(await host.mustRead(['hostname'], 'reading the node name'))
  const storages = parsePvesmStatus(await host.mustRead(['pvesm', 'status', '--content', 'images'], 'listing storages'))
  const bridges = parseBridges(await host.mustRead(['ip', '-json', 'link', 'show', 'type', 'bridge'], 'listing bridges'))
  const vms = parseQmList(await host.mustRead(['qm', 'list'], 'listing VMs'))
  const custom = await host.read(['test', '-e', CUSTOM_CERTIFICATE])
  const certificate = custom.code === 0 ? CUSTOM_CERTIFICATE : DEFAULT_CERTIFICATE
  const tlsFingerprint = parseOpensslFingerprint(
    await host.mustRead(['openssl', 'x509', '-noout', '-fingerprint', '-sha256', '-in', certificate], 'reading the API certificate fingerprint'),
  )
  return {pve, node, storages, bridges, vms, tlsFingerprint}
}
