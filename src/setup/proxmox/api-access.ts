import {z} from 'zod'

import {ExitCode, UserError} from '../../core/errors.js'
import type {RemoteHost} from './remote.js'

/**
 * Least-privilege API access for the agent: a role with only the privileges the Proxmox provisioner uses, a user in
 * the pve realm, and an API token. The role is granted on a resource pool that holds the templates and their storage
 * (the agent clones into it), on the node (its status: Sys.Audit) and on the bridge's SDN zone (SDN.Use, PVE 8+), and
 * nowhere else: the token can't touch VMs outside the pool. All of it through `pveum`, whose JSON output is parsed here.
 */

/** What the provisioner calls needs (PVE's permission checks for each API path it uses). */
const PRIVILEGES = [
  'Datastore.AllocateSpace', // clone and resize disks
  'Datastore.Audit', // node storage list: placement, capacity, doctor
  'Sys.Audit', // node status (capacity) and task status and logs
  'VM.Allocate', // create clones, destroy them
  'VM.Audit', // list VMs, read their config and status
  'VM.Clone', // clone the template
  'VM.Config.CPU', // cores
  'VM.Config.Cloudinit', // ciuser, cipassword, sshkeys, ipconfig0
  'VM.Config.Disk', // resize
  'VM.Config.Memory', // memory
  'VM.Config.Options', // agent, tags
  'VM.PowerMgmt', // start, shutdown, stop
] as const

/** What passing a GPU through adds: a mapping's use (check_hostpci_perm), hostpci and the q35 machine (HWType). */
const GPU_PRIVILEGES = ['Mapping.Use', 'VM.Config.HWType']

/** The privileges for this release: PVE 8 checks SDN.Use on the bridge of a cloned NIC; PVE 9 split VM.Monitor. */
export function rolePrivileges(pveMajor: number): string[] {
  const guestAgent = pveMajor >= 9 ? 'VM.GuestAgent.Audit' : 'VM.Monitor'
  return [...PRIVILEGES, guestAgent, ...(pveMajor >= 8 ? ['SDN.Use'] : [])].sort()
}

export interface ApiAccessSettings {
  role: string
  /** USER@REALM, like outpost@pve */
  user: string
  tokenName: string
  pveMajor: number
  /** The secret of this token from an earlier run, if any; kept when the API still accepts it. */
  knownSecretWorks: boolean
  /** GPUs are passed through: the role also gets Mapping.Use and VM.Config.HWType (hostpci and machine). */
  gpuPassthrough?: boolean
  /** The resource pool the agent's rights are scoped to; the templates and their storage are put in it. */
  pool: string
  node: string
  bridge: string
  storage: string
  templateVmids: readonly number[]
}

export type AccessStatus = 'created' | 'updated' | 'unchanged'

export interface ApiAccessResult {
  role: AccessStatus
  pool: AccessStatus
  user: AccessStatus
  acl: AccessStatus
  token: AccessStatus | 'replaced'
  tokenId: string
  /** Present when the token was (re)made; undefined when the known one is kept, or in a dry run. */
  secret?: string
}

const flag = z.union([z.boolean(), z.number(), z.string()]).transform((value) => value === true || value === 1 || value === '1')
const RoleList = z.array(z.looseObject({roleid: z.string(), privs: z.union([z.string(), z.array(z.string())]).optional()}))
const UserList = z.array(z.looseObject({userid: z.string()}))
const AclList = z.array(z.looseObject({path: z.string(), roleid: z.string(), type: z.string(), ugid: z.string(), propagate: flag.optional()}))
const TokenList = z.array(z.looseObject({tokenid: z.string()}))
const PoolList = z.array(z.looseObject({poolid: z.string()}))
const PoolMember = z.looseObject({type: z.string(), vmid: z.union([z.number(), z.string()]).optional(), storage: z.string().optional()})
const PoolConfig = z.looseObject({members: z.array(PoolMember).default([])})
const NewToken = z.looseObject({
  'full-tokenid': z.string(),
  value: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'expected the secret, a lowercase UUID'),
})

/** Parses pveum's `--output-format json` answer by a schema; the error names the command and the field. */
export function parsePveum<S extends z.ZodType>(command: string, output: string, schema: S): z.infer<S> {
  let raw: unknown
  try {
    raw = JSON.parse(output)
  } catch {
    throw new UserError(`could not read the output of \`pveum ${command}\`: not JSON ("${output.trim().slice(0, 80)}")`, {code: 'unexpected_output'})
  }
  const parsed = schema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'answer'
    throw new UserError(`could not read the output of \`pveum ${command}\`: ${where}: ${issue?.message ?? 'invalid'}`, {code: 'unexpected_output'})
  }
  return parsed.data
}

function privilegesOf(privs: string | string[] | undefined): string[] {
  const list = Array.isArray(privs) ? privs : (privs ?? '').split(/[,\s]+/)
  return list.filter(Boolean).sort()
}

async function pveumJson<S extends z.ZodType>(host: RemoteHost, args: string[], schema: S): Promise<z.infer<S>> {
  const output = await host.mustRead(['pveum', ...args, '--output-format', 'json'], `pveum ${args.join(' ')}`)
  return parsePveum(args.join(' '), output, schema)
}

const POOL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/

/** The pool, holding the templates and the storage of their disks (and so of linked clones). */
async function ensurePool(host: RemoteHost, settings: ApiAccessSettings): Promise<AccessStatus> {
  const {pool} = settings
  if (!POOL_ID.test(pool)) {
    throw new UserError(`--pool "${pool}" is not a Proxmox pool name`, {code: 'invalid_flag', exit: ExitCode.usage, suggestion: 'pass letters, digits, dots, dashes and underscores, like outpost'})
  }
  let status: AccessStatus = 'unchanged'
  let vms = new Set<number>()
  let storages = new Set<string>()
  if ((await pveumJson(host, ['pool', 'list'], PoolList)).some((item) => item.poolid === pool)) {
    const output = await host.mustRead(['pvesh', 'get', `/pools/${pool}`, '--output-format', 'json'], `reading pool ${pool}`)
    const {members} = parsePveum(`pvesh get /pools/${pool}`, output, PoolConfig)
    vms = new Set(members.filter((member) => member.type === 'qemu').map((member) => Number(member.vmid)))
    storages = new Set(members.filter((member) => member.type === 'storage').map((member) => member.storage ?? ''))
  } else {
    await host.change(['pveum', 'pool', 'add', pool, '--comment', 'Outpost: the templates and the VMs the agent rents out'], `creating pool ${pool}`)
    status = 'created'
  }
  const missingVms = settings.templateVmids.filter((vmid) => !vms.has(vmid))
  const missingStorage = storages.has(settings.storage) ? [] : [settings.storage]
  if (missingVms.length > 0 || missingStorage.length > 0) {
    const what = [...missingVms.map((vmid) => `VM ${vmid}`), ...missingStorage.map((storage) => `storage ${storage}`)].join(', ')
    const args = [...(missingVms.length > 0 ? ['--vms', missingVms.join(',')] : []), ...(missingStorage.length > 0 ? ['--storage', settings.storage] : [])]
    await host.change(['pveum', 'pool', 'modify', pool, ...args], `adding ${what} to pool ${pool}`)
    if (status === 'unchanged') status = 'updated'
  }
  return status
}

/**
 * The paths the role is granted on: the pool, the node, (PVE 8+) the bridge's zone, and with GPU passthrough the PCI
 * resource mappings (Mapping.Use is checked on /mapping/pci/<id>). Never `/`.
 */
export function aclPaths(settings: Pick<ApiAccessSettings, 'pool' | 'node' | 'bridge' | 'pveMajor' | 'gpuPassthrough'>): string[] {
  return [
    `/pool/${settings.pool}`,
    `/nodes/${settings.node}`,
    ...(settings.pveMajor >= 8 ? [`/sdn/zones/localnetwork/${settings.bridge}`] : []),
    ...(settings.gpuPassthrough ? ['/mapping/pci'] : []),
  ]
}

/** Grants the role on exactly aclPaths(), and takes back the grant on `/` that earlier versions of the wizard made. */
async function ensureAcls(host: RemoteHost, settings: ApiAccessSettings): Promise<AccessStatus> {
  const own = (await pveumJson(host, ['acl', 'list'], AclList)).filter((acl) => acl.type === 'user' && acl.ugid === settings.user && acl.roleid === settings.role)
  let changed = false
  for (const path of aclPaths(settings)) {
    if (own.some((acl) => acl.path === path && acl.propagate !== false)) continue
    await host.change(['pveum', 'acl', 'modify', path, '--users', settings.user, '--roles', settings.role, '--propagate', '1'], `granting ${settings.role} on ${path} to ${settings.user}`)
    changed = true
  }
  if (own.some((acl) => acl.path === '/')) {
    await host.change(['pveum', 'acl', 'delete', '/', '--users', settings.user, '--roles', settings.role], `taking back ${settings.role} on / from ${settings.user}`)
    changed = true
  }
  return !changed ? 'unchanged' : own.length === 0 ? 'created' : 'updated'
}

export async function ensureApiAccess(host: RemoteHost, settings: ApiAccessSettings): Promise<ApiAccessResult> {
  if (!/^[^\s@!]+@[^\s@!]+$/.test(settings.user)) {
    throw new UserError(`--api-user "${settings.user}" is not USER@REALM`, {code: 'invalid_flag', exit: ExitCode.usage, suggestion: 'pass a user like outpost@pve'})
  }
  const privileges = [...rolePrivileges(settings.pveMajor), ...(settings.gpuPassthrough ? GPU_PRIVILEGES : [])].sort()
  const tokenId = `${settings.user}!${settings.tokenName}`

  const role = (await pveumJson(host, ['role', 'list'], RoleList)).find((item) => item.roleid === settings.role)
  let roleStatus: AccessStatus = 'unchanged'
  if (!role) {
    await host.change(['pveum', 'role', 'add', settings.role, '--privs', privileges.join(',')], `creating role ${settings.role}`)
    roleStatus = 'created'
  } else if (privilegesOf(role.privs).join(',') !== privileges.join(',')) {
    // modify without --append replaces the list: privileges added by hand are taken away again.
    await host.change(['pveum', 'role', 'modify', settings.role, '--privs', privileges.join(',')], `setting the privileges of role ${settings.role}`)
    roleStatus = 'updated'
  }

  let userStatus: AccessStatus = 'unchanged'
  if (!(await pveumJson(host, ['user', 'list'], UserList)).some((item) => item.userid === settings.user)) {
    await host.change(['pveum', 'user', 'add', settings.user, '--comment', 'Outpost agent (API token only)'], `creating user ${settings.user}`)
    userStatus = 'created'
  }

  const poolStatus = await ensurePool(host, settings)
  const aclStatus = await ensureAcls(host, settings)

  // A user made just now (or in a dry run) has no tokens; asking pveum about it would fail.
  const tokens = userStatus === 'created' ? [] : await pveumJson(host, ['user', 'token', 'list', settings.user], TokenList)
  const tokenExists = tokens.some((token) => token.tokenid === settings.tokenName)
  if (tokenExists && settings.knownSecretWorks) {
    return {role: roleStatus, pool: poolStatus, user: userStatus, acl: aclStatus, token: 'unchanged', tokenId}
  }
  // Proxmox shows a token's secret only when it is made: one whose secret is lost is replaced.
  if (tokenExists) await host.change(['pveum', 'user', 'token', 'remove', settings.user, settings.tokenName], `removing token ${tokenId}, whose secret is unknown`)
  // privsep 0: the token has exactly its user's rights, and that user has only the role above.
  const output = await host.change(
    ['pveum', 'user', 'token', 'add', settings.user, settings.tokenName, '--privsep', '0', '--comment', 'outpost agent', '--output-format', 'json'],
    `creating token ${tokenId}`,
  )
  const created = output === undefined ? undefined : parsePveum('user token add', output, NewToken)
  if (created && created['full-tokenid'] !== tokenId) {
    throw new UserError(`pveum made token ${created['full-tokenid']}, not ${tokenId}`, {code: 'unexpected_output'})
  }
  return {role: roleStatus, pool: poolStatus, user: userStatus, acl: aclStatus, token: tokenExists ? 'replaced' : 'created', tokenId, ...(created ? {secret: created.value} : {})}
}
