import {randomBytes} from 'node:crypto'
import type {Proxmox} from 'proxmox-api'
import {z} from 'zod'

import type {Contract} from '../../core/api/schemas.js'
import {describeError} from '../../core/errors.js'
import type {GpuUnit} from '../../gpu/allocator.js'
import {
  contractIdFromName,
  checkClaim,
  healthOfClaim,
  instanceName,
  isOutpostName,
  ProvisionAbortedError,
  ProvisionError,
  toProvisionError,
  type Capacity,
  type InstanceClaim,
  type InstanceHealth,
  type ListedInstance,
  type ProvisionedInstance,
  type Provisioner,
  type SetupCheck,
} from '../provisioner.js'
import {OneAtATime} from '../one-at-a-time.js'
import {pollUntil, PollTimeoutError} from '../poll.js'
import {provisionWithCleanup} from '../provision-with-cleanup.js'
import {ProxmoxApiError, ProxmoxConnection, TlsFingerprintMismatchError, UPID, upidNode} from './connection.js'
import {allocateAddress, ipconfigFor, usedAddress, type IpPool} from './ip-pool.js'
import {
  AgentPing,
  ClusterResources,
  GuestInterfaces,
  MaybeUpid,
  NextId,
  NodeStatus,
  NodeStorage,
  TaskLog,
  TaskStatus,
  Version,
  VmConfig,
  VmStatus,
  type ClusterResource,
  PciMappingList,
} from './schemas.js'

/** What the backend needs, from `[provisioner.proxmox]` (see the config schema for each setting). */
export interface ProxmoxSettings {
  host: string
  port: number
  /** USER@REALM!TOKENID */
  tokenId: string
  tokenSecret: string
  /** SHA-256 fingerprint of a self-signed certificate to pin; without it the certificate must verify. */
  tlsFingerprint?: string
  /** The node that runs the VMs, or "auto": the online node with most free memory that has the storage. */
  node: string
  templateVmid: number
  clone: 'linked' | 'full'
  /** Target storage of full clones; the template's when undefined. */
  storage?: string
  pool?: string
  /** The disk grown to the contract's storage, like scsi0. */
  disk: string
  /** The cloud-init user made in the VM. */
  ciuser: string
  sshPort: number
  /** Static addresses for the VMs; DHCP when undefined. */
  ipPool?: IpPool
  taskTimeoutMs: number
  addressTimeoutMs: number
  /** Graceful shutdown time before a forced stop on terminate (0: stop at once), whole seconds as Proxmox takes it. */
  shutdownTimeoutSeconds: number
  requestTimeoutMs: number
  /** Keep the VM of a failed provision for inspection. */
  keepFailed: boolean
  /** Free storage the doctor asks for (the largest offering's disk), in GB; 10 when undefined. */
  minimumStorageGb?: number
  /** First poll interval of tasks and the guest agent (default 250 ms); an emulated host that answers in milliseconds is tested with less. */
  firstPollMs?: number
  /** `[gpu] passthrough`: the PCI devices (mappings or raw addresses) handed to VMs, one contract each. */
  passthrough: readonly PassthroughDevice[]
}

export interface PassthroughDevice {
  mapping?: string
  address?: string
  model: string
  pcie: boolean
}

/** The tag on every VM the provisioner makes; with the `outpost-<contract>` name it marks the VM as ours. */
export const OUTPOST_TAG = 'outpost'
const TASK_LOG_TAIL = 8
const GIB = 1024 ** 3

interface Vm {
  vmid: number
  node: string
  name?: string
  status?: string
}

interface Placement {
  templateNode: string
  targetNode: string
  storage: string
}

/** `local-lvm:base-9000-disk-0,size=10G` → storage `local-lvm`, size in GiB. */
function parseDisk(value: unknown): {storage: string; sizeGb: number} | undefined {
  if (typeof value !== 'string') return undefined
  const storage = /^([^:,]+):/.exec(value)?.[1]
  if (!storage) return undefined
  const size = /(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)(?:,|$)/.exec(value)
  const unit = {'': 1 / GIB, K: 1 / 1024 ** 2, M: 1 / 1024, G: 1, T: 1024}[size?.[2] ?? 'G'] ?? 1
  return {storage, sizeGb: size ? Number(size[1]) * unit : 0}
}

/** A VM whose name the cluster list doesn't know (yet): none, or the "VM <vmid>" pvestatd reports for an unnamed one. */
function nameUnknown(item: ClusterResource): boolean {
  return item.type === 'qemu' && !item.template && (item.name === undefined || item.name === `VM ${item.vmid}`)
}

function hasTag(tags: string | undefined, tag: string): boolean {
  return (tags ?? '').split(/[;,\s]+/).includes(tag)
}

/** cloud-init's sshkeys must be URL-encoded (Proxmox checks it against its `urlencoded` format), spaces as %20. */
export function encodeSshKeys(keys: string): string {
  return encodeURIComponent(keys.trim() + '\n')
}

/** VMs on a Proxmox VE host or cluster: a clone of a cloud-init template per contract. */
export class ProxmoxProvisioner implements Provisioner {
  readonly type = 'proxmox'
  readonly connection: ProxmoxConnection
  /** Work that must not interleave: VMID allocation and its clone ("clone"), address allocation and its config write ("address"). */
  private readonly turns = new OneAtATime()
  private readonly provisions = new OneAtATime()

  constructor(private readonly settings: ProxmoxSettings) {
    this.connection = new ProxmoxConnection({
      host: settings.host,
      port: settings.port,
      tokenId: settings.tokenId,
      tokenSecret: settings.tokenSecret,
      tlsFingerprint: settings.tlsFingerprint,
      requestTimeoutMs: settings.requestTimeoutMs,
    })
  }

  async provision(contract: Contract, signal: AbortSignal, gpus: readonly GpuUnit[] = []): Promise<ProvisionedInstance> {
    const name = instanceName(contract.contract_id)
    if (gpus.length !== contract.gpu_count) {
      const why = this.settings.passthrough.length === 0 ? 'this host passes no GPU through ([gpu] passthrough is empty)' : `it was allocated ${gpus.length}`
      throw new ProvisionError(`contract ${contract.contract_id} asks for ${contract.gpu_count} GPUs and ${why}`, {retryPossible: this.settings.passthrough.length >= contract.gpu_count})
    }
    // The contract's VM, once found or cloned: what a failed attempt cleans up.
    const made: {vm?: Vm} = {}
    return provisionWithCleanup(this.provisions, name, signal, {
      attempt: () => this.provisionOnce(contract, name, signal, made, gpus),
      cleanUp: (failure) => this.cleanUpAfter(failure, made.vm, name),
    })
  }

  private async provisionOnce(contract: Contract, name: string, signal: AbortSignal, made: {vm?: Vm}, gpus: readonly GpuUnit[]): Promise<ProvisionedInstance> {
    const timings: Record<string, number> = {}
    const timed = async <T>(phase: string, work: () => Promise<T>): Promise<T> => {
      const started = performance.now()
      try {
        return await work()
      } finally {
        timings[phase] = Math.round(performance.now() - started)
      }
    }
    made.vm = await this.findVmSettled(name, signal)
    if (made.vm) made.vm = await this.waitUnlocked(made.vm, name, signal)
    else made.vm = await timed('clone', () => this.cloneTemplate(name, signal))
    let credentials: Record<string, string> | undefined
    let staticAddress: string | undefined
    const current = made.vm
    // A VM already running was configured by an earlier attempt whose password is gone (it was never stored): the
    // renter's SSH key still gets in, and no credentials are reported rather than a password that doesn't work.
    if ((await this.vmStatus(current, signal)).status !== 'running') {
      const configured = await timed('configure', () => this.configure(current, contract, signal, gpus))
      credentials = {username: this.settings.ciuser, password: configured.password}
      staticAddress = configured.address
      await timed('start', () => this.start(current, signal))
    }
    const addresses = await timed('address', () => this.waitForAddress(current, staticAddress, signal))
    return {
      externalId: String(current.vmid),
      contractId: contract.contract_id,
      ipAddress: addresses.ipv4,
      ipv6Address: addresses.ipv6,
      sshPort: this.settings.sshPort,
      credentials,
      details: {node: current.node, vmid: current.vmid, name, timings_ms: timings},
    }
  }

  async terminate(claim: InstanceClaim, signal?: AbortSignal): Promise<void> {
    const name = instanceName(claim.contractId)
    const vms = await this.vmsNamed(name, signal).catch((error: unknown) => {
      throw toProvisionError(error, `terminating ${name}`)
    })
    for (const {vm} of checkClaim(claim, vms)) {
      try {
        await this.destroy(vm, signal)
      } catch (error) {
        if (error instanceof ProvisionAbortedError) throw error
        // Only the cluster's VM list says a VM is gone; an error answer (a 5xx included) never does.
        const still = await this.vmById(vm.vmid).catch(() => vm)
        if (still) throw toProvisionError(error, `terminating VM ${vm.vmid} (${name})`)
      }
    }
  }

  async health(claim: InstanceClaim, signal?: AbortSignal): Promise<InstanceHealth> {
    return healthOfClaim('VM', claim, () => this.vmsNamed(instanceName(claim.contractId), signal), async ({vm}): Promise<InstanceHealth> => {
      let status: z.infer<typeof VmStatus>
      try {
        status = await this.vmStatus(vm, signal)
      } catch (error) {
        if (error instanceof ProvisionAbortedError) throw error
        return {status: 'unknown', details: {error: describeError(error)}}
      }
      if (status.status !== 'running') return {status: 'unhealthy', details: {vm_status: status.status}}
      try {
        await this.connection.call(`guest agent ping of VM ${vm.vmid}`, AgentPing, (api) => api.nodes.$(vm.node).qemu.$(vm.vmid).agent.ping.$post(), signal)
      } catch (error) {
        if (error instanceof ProvisionAbortedError) throw error
        return {status: 'unhealthy', uptimeSeconds: status.uptime, details: {vm_status: 'running', guest_agent: describeError(error)}}
      }
      return {status: 'healthy', uptimeSeconds: status.uptime, details: {vm_status: 'running', guest_agent: 'ok'}}
    })
  }

  async find(contractId: string, signal?: AbortSignal): Promise<ProvisionedInstance | undefined> {
    const name = instanceName(contractId)
    try {
      const vm = await this.findVm(name, signal)
      if (!vm || vm.status !== 'running') return undefined
      const addresses = await this.guestAddresses(vm, signal)
      if (!addresses) return undefined
      return {
        externalId: String(vm.vmid),
        contractId,
        ipAddress: addresses.ipv4,
        ipv6Address: addresses.ipv6,
        sshPort: this.settings.sshPort,
        details: {node: vm.node, vmid: vm.vmid, name},
      }
    } catch (error) {
      throw toProvisionError(error, `looking up ${name}`)
    }
  }

  async list(signal?: AbortSignal): Promise<ListedInstance[]> {
    try {
      const resources = await this.resources('vm', signal)
      return resources
        .filter((item) => item.vmid !== undefined && !item.template && (isOutpostName(item.name) || hasTag(item.tags, OUTPOST_TAG)))
        .map((item) => {
          const name = item.name ?? `VM ${item.vmid}`
          const contractId = contractIdFromName(name)
          return {externalId: String(item.vmid), name, ...(contractId ? {contractId} : {})}
        })
    } catch (error) {
      throw toProvisionError(error, 'listing VMs')
    }
  }

  async capacity(signal?: AbortSignal): Promise<Capacity | undefined> {
    try {
      const nodes = await this.candidateNodes(signal)
      const storage = (await this.placementStorage(signal)).storage
      let cpuCores = 0
      let memoryBytes = 0
      let storageBytes = 0
      for (const node of nodes) {
        const status = await this.connection.call(`status of node ${node}`, NodeStatus, (api) => api.nodes.$(node).status.$get(), signal)
        cpuCores += status.cpuinfo.cpus
        memoryBytes += status.memory.free
        const storages = await this.nodeStorage(node, signal)
        storageBytes += storages.find((item) => item.storage === storage)?.avail ?? 0
      }
      const gpus = this.gpuUnitsNow()
      return {cpuCores, memoryMb: Math.floor(memoryBytes / 1024 ** 2), storageGb: Math.floor(storageBytes / GIB), gpuCount: gpus.length, gpuModels: [...new Set(gpus.map((unit) => unit.model))].sort()}
    } catch (error) {
      throw toProvisionError(error, 'reading node capacity')
    }
  }

  /** The passed-through devices: a mapping by its id, a raw address by itself (a mapping id never holds a colon). */
  async gpuUnits(): Promise<GpuUnit[]> {
    return this.gpuUnitsNow()
  }

  private gpuUnitsNow(): GpuUnit[] {
    return this.settings.passthrough.map((entry) => ({id: entry.mapping ?? entry.address ?? '', model: entry.model}))
  }

  async verifySetup(signal?: AbortSignal): Promise<SetupCheck[]> {
    const checks: SetupCheck[] = []
    const endpoint = this.connection.endpoint
    try {
      const version = await this.connection.call('reading the Proxmox version', Version, (api) => api.version.$get(), signal)
      checks.push({name: 'proxmox api', ok: true, message: `${endpoint} answers (Proxmox VE ${version.version})`})
      checks.push({name: 'proxmox token', ok: true, message: `token ${this.settings.tokenId} is accepted`})
    } catch (error) {
      if (error instanceof ProxmoxApiError && error.status === 401) {
        checks.push({name: 'proxmox api', ok: true, message: `${endpoint} answers`})
        checks.push({
          name: 'proxmox token',
          ok: false,
          message: `token ${this.settings.tokenId} was refused (${error.reason ?? '401'})`,
          remedy: 'check token_id and token_secret, and that the token exists (Datacenter → Permissions → API Tokens)',
        })
      } else {
        checks.push({
          name: 'proxmox api',
          ok: false,
          message: describeError(error),
          remedy:
            error instanceof TlsFingerprintMismatchError
              ? 'if the host certificate was renewed, set tls_fingerprint to the new one (`openssl x509 -noout -fingerprint -sha256 -in /etc/pve/local/pveproxy-ssl.pem`)'
              : `check that ${endpoint} is reachable from this host (host, port, firewall)`,
        })
      }
      return checks
    }
    try {
      const template = await this.vmById(this.settings.templateVmid, signal)
      if (!template) {
        checks.push({name: 'proxmox template', ok: false, message: `no VM ${this.settings.templateVmid}`, remedy: 'run `outpost setup proxmox` to make the template, or set template_vmid'})
      } else if (!(await this.isTemplate(template, signal))) {
        checks.push({name: 'proxmox template', ok: false, message: `VM ${template.vmid} ("${template.name ?? ''}") is not a template`, remedy: `convert it: \`qm template ${template.vmid}\``})
      } else {
        checks.push({name: 'proxmox template', ok: true, message: `template ${template.vmid} ("${template.name ?? ''}") on ${template.node}`})
      }
    } catch (error) {
      checks.push({name: 'proxmox template', ok: false, message: describeError(error)})
      return checks
    }
    try {
      const placement = await this.place(signal)
      const storages = await this.nodeStorage(placement.targetNode, signal)
      const storage = storages.find((item) => item.storage === placement.storage)
      const availableGb = Math.floor((storage?.avail ?? 0) / GIB)
      const needed = this.settings.minimumStorageGb ?? 10
      checks.push({
        name: 'proxmox storage',
        ok: availableGb >= needed,
        message: `${placement.storage} on ${placement.targetNode}: ${availableGb} GB free (${needed} GB needed)`,
        ...(availableGb >= needed ? {} : {remedy: `free space on ${placement.storage} or set [provisioner.proxmox] storage to another one`}),
      })
    } catch (error) {
      checks.push({name: 'proxmox storage', ok: false, message: describeError(error), remedy: 'check node and storage in [provisioner.proxmox]'})
    }
    if (this.settings.passthrough.length > 0) checks.push(await this.passthroughCheck(signal))
    return checks
  }

  async close(): Promise<void> {
    await this.connection.close()
  }

  // --- provisioning steps ---

  private async cloneTemplate(name: string, signal: AbortSignal): Promise<Vm> {
    const placement = await this.place(signal)
    const full = this.settings.clone === 'full'
    let claimed: {newid: number; upid: string}
    let newid: number | undefined
    try {
      // /cluster/nextid hands the same VMID to two callers until a clone claims it: allocate and claim one at a time.
      claimed = await this.turns.run('clone', async () => {
        const allocated = await this.connection.call('allocating a VMID', NextId, (api) => api.cluster.nextid.$get(), signal)
        newid = allocated
        const upid = await this.connection.call(
          `cloning template ${this.settings.templateVmid} to VM ${allocated}`,
          UPID,
          (api) =>
            api.nodes.$(placement.templateNode).qemu.$(this.settings.templateVmid).clone.$post({
              newid: allocated,
              name,
              full,
              ...(placement.targetNode === placement.templateNode ? {} : {target: placement.targetNode}),
              ...(full ? {storage: placement.storage} : {}),
              ...(this.settings.pool ? {pool: this.settings.pool} : {}),
            }),
          signal,
        )
        return {newid: allocated, upid}
      })
    } catch (error) {
      // proxmox-api sends a call again after a network error, so the first clone may have been made; PVE refuses the
      // second with "unable to create VM <id>: config file already exists" (qemu-server API2/Qemu.pm clone_vm). Adopt
      // the VM when it is ours, never when the VMID now belongs to someone else.
      const taken = error instanceof ProxmoxApiError && error.status === 500 ? /^unable to create VM (\d+): config file already exists/.exec(error.reason ?? '') : null
      if (taken) return this.waitUnlocked({vmid: Number(taken[1]), node: placement.targetNode}, name, signal)
      // An answer that can't be read (or none) after the clone was sent: the clone may have been made all the same.
      if (newid !== undefined && error instanceof ProxmoxApiError && (error.kind === 'protocol' || error.kind === 'network')) {
        const adopted = await this.adoptUnconfirmedClone({vmid: newid, node: placement.targetNode}, name, signal)
        if (adopted) return adopted
      }
      throw error
    }
    await this.waitTask(claimed.upid, `clone of template ${this.settings.templateVmid} to VM ${claimed.newid}`, signal)
    return {vmid: claimed.newid, node: placement.targetNode, name, status: 'stopped'}
  }

  /**
   * The VM at this VMID when its config names it ours (its clone waited out); undefined when there is none or it is
   * someone else's. The config is read, not the cluster list: the list's names lag (see findVmSettled).
   */
  private async adoptUnconfirmedClone(vm: Vm, name: string, signal: AbortSignal): Promise<Vm | undefined> {
    try {
      return await this.waitUnlocked(vm, name, signal)
    } catch (error) {
      if (error instanceof ProvisionAbortedError) throw error
      return undefined
    }
  }

  /** Waits out a clone still running (its config holds `lock: clone` and no name yet), then checks the VM is ours. */
  private async waitUnlocked(vm: Vm, name: string, signal: AbortSignal): Promise<Vm> {
    const config = await pollUntil(
      async () => {
        const current = await this.vmConfig(vm, signal)
        return current.lock === 'clone' ? undefined : current
      },
      {what: `clone of VM ${vm.vmid}`, timeoutMs: this.settings.taskTimeoutMs, signal, initialMs: this.settings.firstPollMs},
    )
    if (config.name !== name) {
      throw new ProvisionError(`VMID ${vm.vmid} belongs to another VM ("${config.name ?? 'unnamed'}"), not ${name}; it was left alone`, {retryPossible: true})
    }
    return {...vm, name}
  }

  private async configure(vm: Vm, contract: Contract, signal: AbortSignal, gpus: readonly GpuUnit[]): Promise<{password: string; address?: string}> {
    const password = randomBytes(18).toString('base64url')
    const config = await this.vmConfig(vm, signal)
    const passthrough = this.hostpci(gpus, config)
    const settings = async (address?: string) => {
      const ipconfig0 = address && this.settings.ipPool ? ipconfigFor(address, this.settings.ipPool) : 'ip=dhcp'
      await this.connection.call(
        `configuring VM ${vm.vmid}`,
        z.unknown(),
        (api) =>
          api.nodes.$(vm.node).qemu.$(vm.vmid).config.$put({
            cores: contract.cpu_cores,
            memory: String(contract.memory_mb),
            ciuser: this.settings.ciuser,
            cipassword: password,
            ...(contract.ssh_pubkey.trim() ? {sshkeys: encodeSshKeys(contract.ssh_pubkey)} : {}),
            ipconfig0,
            agent: '1',
            tags: OUTPOST_TAG,
            ...passthrough,
          }),
        signal,
      ).catch((error: unknown) => {
        // The renter's key is the one value here that Outpost doesn't make. PVE checks each line with `ssh-keygen -l` and
        // dies "SSH public key validation error" (pve-common Tools.pm validate_ssh_public_keys): a 500 no retry changes.
        if (error instanceof ProxmoxApiError && error.reason === 'SSH public key validation error') {
          throw new ProvisionError(`the renter's SSH key was refused by Proxmox: ${error.reason}`, {retryPossible: false, cause: error, category: 'ssh_key_refused'})
        }
        throw error
      })
    }
    let address: string | undefined
    const pool = this.settings.ipPool
    if (pool) {
      address = await this.turns.run('address', async () => {
        const free = usedAddress(config.ipconfig0) ?? allocateAddress(pool, await this.addressesInUse(vm.vmid, signal))
        if (!free) throw new ProvisionError(`no free address left in ip_pool ${pool.first}–${pool.last}`, {retryPossible: true, category: 'no_capacity'})
        await settings(free)
        return free
      })
    } else {
      await settings()
    }
    const disk = parseDisk(config[this.settings.disk])
    if (!disk) throw new ProvisionError(`VM ${vm.vmid} has no disk ${this.settings.disk} to resize (set [provisioner.proxmox] disk)`, {retryPossible: false})
    if (contract.storage_gb > disk.sizeGb) {
      // The config schema admits only disk keys of the scsiN/virtioN/sataN/ideN form that Proxmox's enum lists.
      const upid = await this.connection.call(
        `resizing ${this.settings.disk} of VM ${vm.vmid}`,
        MaybeUpid,
        (api) => api.nodes.$(vm.node).qemu.$(vm.vmid).resize.$put({disk: this.settings.disk as Proxmox.Tdisk_1, size: `${contract.storage_gb}G`}),
        signal,
      )
      if (upid) await this.waitTask(upid, `resize of VM ${vm.vmid}`, signal)
    }
    return {password, address}
  }

  /**
   * `hostpci<n>` of each allocated device (qemu-server PCI.pm): `mapping=<id>` for a resource mapping, the address
   * itself for a raw device, `pcie=1` on the PCI Express bus, which needs the q35 machine (set when the template's
   * is another). Keys a template left beyond these are deleted, so a VM never gets a device it wasn't allocated.
   */
  private hostpci(gpus: readonly GpuUnit[], config: VmConfig): Record<string, string> {
    const values: Record<string, string> = {}
    let pcie = false
    gpus.forEach((unit, index) => {
      const entry = this.settings.passthrough.find((item) => (item.mapping ?? item.address) === unit.id)
      if (!entry) throw new ProvisionError(`GPU ${unit.id} is not in [gpu] passthrough`, {retryPossible: false})
      pcie ||= entry.pcie
      values[`hostpci${index}`] = `${entry.mapping ? `mapping=${entry.mapping}` : `host=${entry.address}`}${entry.pcie ? ',pcie=1' : ''}`
    })
    const leftover = Object.keys(config).filter((key) => /^hostpci\d+$/.test(key) && values[key] === undefined)
    if (pcie && !/q35/.test(String(config.machine ?? ''))) values.machine = 'q35'
    if (leftover.length > 0) values.delete = leftover.join(',')
    return values
  }

  /** The mappings the config names exist and are valid on the node, as PVE checks them (`check-node`). */
  private async passthroughCheck(signal?: AbortSignal): Promise<SetupCheck> {
    const raw = this.settings.passthrough.filter((entry) => entry.address !== undefined)
    if (raw.length > 0) {
      return {
        name: 'proxmox gpus',
        ok: false,
        message: `[gpu] passthrough names raw PCI addresses (${raw.map((entry) => entry.address).join(', ')}): Proxmox VE lets only root@pam with a password set them, never an API token ("only root can set 'hostpci0' config for non-mapped devices")`,
        remedy: 'map them instead: `outpost setup proxmox --gpus all` creates a resource mapping per GPU and writes it to [gpu] passthrough',
      }
    }
    try {
      const node = (await this.place(signal)).targetNode
      const mappings = await this.connection.call('listing PCI mappings', PciMappingList, (api) => api.cluster.mapping.pci.$get({'check-node': node}), signal)
      const problems = this.settings.passthrough.flatMap((entry) => {
        const found = mappings.find((mapping) => mapping.id === entry.mapping)
        if (!found) return [`mapping ${entry.mapping} does not exist`]
        return (found.checks ?? []).map((check) => `mapping ${entry.mapping}: ${check.message}`)
      })
      if (problems.length > 0) return {name: 'proxmox gpus', ok: false, message: problems.join('; '), remedy: 'run `outpost setup proxmox --gpus all` again, or fix the mappings under Datacenter → Resource Mappings'}
      return {name: 'proxmox gpus', ok: true, message: `${this.settings.passthrough.length} GPUs mapped on ${node}: ${this.settings.passthrough.map((entry) => `${entry.mapping} (${entry.model})`).join(', ')}`}
    } catch (error) {
      return {name: 'proxmox gpus', ok: false, message: describeError(error), remedy: 'the token needs Mapping.Audit or Mapping.Use on /mapping/pci'}
    }
  }

  private async start(vm: Vm, signal: AbortSignal): Promise<void> {
    const upid = await this.connection.call(`starting VM ${vm.vmid}`, UPID, (api) => api.nodes.$(vm.node).qemu.$(vm.vmid).status.start.$post(), signal)
    await this.waitTask(upid, `start of VM ${vm.vmid}`, signal)
  }

  private async waitForAddress(vm: Vm, expected: string | undefined, signal: AbortSignal): Promise<{ipv4: string; ipv6?: string}> {
    try {
      return await pollUntil(() => this.guestAddresses(vm, signal, expected), {
        what: `the guest agent of VM ${vm.vmid} reporting an address`,
        timeoutMs: this.settings.addressTimeoutMs,
        signal,
        initialMs: this.settings.firstPollMs,
      })
    } catch (error) {
      if (error instanceof PollTimeoutError) {
        throw new ProvisionError(`${error.message} (is qemu-guest-agent installed and enabled in the template?)`, {retryPossible: true, cause: error})
      }
      throw error
    }
  }

  /** The VM's addresses from the guest agent, or undefined while the agent isn't up (Proxmox answers 500 then). */
  private async guestAddresses(vm: Vm, signal?: AbortSignal, expected?: string): Promise<{ipv4: string; ipv6?: string} | undefined> {
    let interfaces: GuestInterfaces
    try {
      interfaces = await this.connection.call(
        `guest agent of VM ${vm.vmid}`,
        GuestInterfaces,
        (api) => api.nodes.$(vm.node).qemu.$(vm.vmid).agent['network-get-interfaces'].$get(),
        signal,
      )
    } catch (error) {
      if (error instanceof ProxmoxApiError && error.status === 500) return undefined
      throw error
    }
    const addresses = interfaces.result.filter((item) => item.name !== 'lo').flatMap((item) => item['ip-addresses'] ?? [])
    const ipv4 = addresses
      .filter((item) => item['ip-address-type'] === 'ipv4' && !/^(127\.|169\.254\.)/.test(item['ip-address']))
      .map((item) => item['ip-address'])
    const ipv6 = addresses.find((item) => item['ip-address-type'] === 'ipv6' && !/^(fe80:|::1$)/i.test(item['ip-address']))?.['ip-address']
    const chosen = expected ? ipv4.find((address) => address === expected) : ipv4[0]
    if (!chosen) return undefined
    return ipv6 ? {ipv4: chosen, ipv6} : {ipv4: chosen}
  }

  /** Polls a task until it stops; a failed task's error carries the end of its log. */
  private async waitTask(upid: string, what: string, signal?: AbortSignal): Promise<void> {
    const node = upidNode(upid)
    let status: z.infer<typeof TaskStatus>
    try {
      status = await pollUntil(
        async () => {
          const current = await this.connection.call(`status of ${what}`, TaskStatus, (api) => api.nodes.$(node).tasks.$(upid).status.$get(), signal)
          return current.status === 'stopped' ? current : undefined
        },
        {what, timeoutMs: this.settings.taskTimeoutMs, signal, initialMs: this.settings.firstPollMs},
      )
    } catch (error) {
      if (error instanceof PollTimeoutError) {
        // Stop the task so the cleanup that follows doesn't race it.
        await this.connection.call(`stopping ${what}`, z.unknown(), (api) => api.nodes.$(node).tasks.$(upid).$delete()).catch(() => undefined)
      }
      throw error
    }
    const exit = status.exitstatus ?? 'unknown'
    if (exit === 'OK' || exit.startsWith('WARNINGS')) return
    const log = await this.connection
      .call(`log of ${what}`, TaskLog, (api) => api.nodes.$(node).tasks.$(upid).log.$get({start: 0, limit: 5000}))
      .then((lines) => lines.slice(-TASK_LOG_TAIL).map((line) => line.t))
      .catch(() => [])
    const tail = log.length > 0 ? `\n  task log:\n    ${log.join('\n    ')}` : ''
    throw new ProvisionError(`${what} failed: ${exit}${tail}`, {retryPossible: true})
  }

  /** Stops (gracefully, forced after shutdown_timeout_seconds), then destroys with purge. */
  private async destroy(vm: Vm, signal?: AbortSignal): Promise<void> {
    const status = await this.vmStatus(vm, signal)
    if (status.status === 'running') {
      const timeout = this.settings.shutdownTimeoutSeconds
      const upid = await this.connection.call(
        `stopping VM ${vm.vmid}`,
        UPID,
        (api) =>
          timeout > 0
            ? api.nodes.$(vm.node).qemu.$(vm.vmid).status.shutdown.$post({timeout, forceStop: true})
            : api.nodes.$(vm.node).qemu.$(vm.vmid).status.stop.$post(),
        signal,
      )
      await this.waitTask(upid, `stop of VM ${vm.vmid}`, signal)
    }
    const upid = await this.connection.call(
      `destroying VM ${vm.vmid}`,
      UPID,
      (api) => api.nodes.$(vm.node).qemu.$(vm.vmid).$delete({purge: true, 'destroy-unreferenced-disks': true}),
      signal,
    )
    await this.waitTask(upid, `destroy of VM ${vm.vmid}`, signal)
  }

  /** Destroys the failed contract's VM, unless keep_failed: then the failure says which VM was kept. */
  private async cleanUpAfter(failure: ProvisionError, vm: Vm | undefined, name: string): Promise<ProvisionError | undefined> {
    const leftover = vm ?? (await this.findVm(name))
    if (!leftover) return undefined
    if (this.settings.keepFailed) {
      return new ProvisionError(`${failure.message} (VM ${leftover.vmid} kept: keep_failed = true)`, {retryPossible: failure.retryPossible, cause: failure})
    }
    await this.destroy(leftover)
    return undefined
  }

  // --- lookups ---

  private async resources(type: 'vm' | 'node' | 'storage', signal?: AbortSignal): Promise<ClusterResource[]> {
    return this.connection.call(`listing cluster ${type} resources`, ClusterResources, (api) => api.cluster.resources.$get({type}), signal)
  }

  /**
   * Every VM named `name` (Proxmox doesn't keep names unique), as claim candidates; a VM the cluster list can't name
   * yet is named from its config (see findVmSettled).
   */
  private async vmsNamed(name: string, signal?: AbortSignal): Promise<{externalId: string; vm: Vm}[]> {
    const named: {externalId: string; vm: Vm}[] = []
    for (const item of await this.resources('vm', signal)) {
      if (item.type !== 'qemu' || item.template || item.vmid === undefined || !item.node) continue
      const vm: Vm = {vmid: item.vmid, node: item.node, name, status: item.status}
      if (item.name === name || (nameUnknown(item) && (await this.currentConfig(vm, signal))?.name === name)) named.push({externalId: String(item.vmid), vm})
    }
    return named
  }

  private async findVm(name: string, signal?: AbortSignal): Promise<Vm | undefined> {
    return this.vmNamed(await this.resources('vm', signal), name)
  }

  private vmNamed(resources: ClusterResource[], name: string): Vm | undefined {
    const match = resources.find((item) => item.name === name && item.type === 'qemu' && !item.template)
    if (!match?.vmid || !match.node) return undefined
    return {vmid: match.vmid, node: match.node, name, status: match.status}
  }

  /**
   * findVm, after waiting out clones still running: one of them may be this contract's, sent before an abort or a lost
   * answer. The cluster list can't name them. pve-manager's /cluster/resources (PVE/API2/Cluster.pm, with
   * PVE/API2Tools.pm extract_vm_stats) takes a VM's lock and tags from its config but its name and status from
   * pvestatd's last pass, every 10 s (PVE/Service/pvestatd.pm): a clone in progress shows `lock: clone` with no name,
   * then "VM <vmid>" (qemu-server's vmstatus default for the temporary config), and a clone just done may still show
   * either. So a VM the list can't name is looked up in its config, which is current.
   */
  private async findVmSettled(name: string, signal?: AbortSignal): Promise<Vm | undefined> {
    const found = await pollUntil(
      async (): Promise<{vm?: Vm} | undefined> => {
        const resources = await this.resources('vm', signal)
        const named = this.vmNamed(resources, name)
        if (named) return {vm: named}
        for (const item of resources.filter(nameUnknown)) {
          if (item.vmid === undefined || item.node === undefined) continue
          const config = await this.currentConfig({vmid: item.vmid, node: item.node}, signal)
          if (config?.lock === 'clone') return undefined
          if (config?.name === name) return {vm: {vmid: item.vmid, node: item.node, name, status: item.status}}
        }
        return {}
      },
      {what: 'clones in progress', timeoutMs: this.settings.taskTimeoutMs, signal, initialMs: this.settings.firstPollMs},
    )
    return found.vm
  }

  /** The VM with this VMID, named from its config when the cluster list doesn't know its name yet (see findVmSettled). */
  private async vmById(vmid: number, signal?: AbortSignal): Promise<Vm | undefined> {
    const match = (await this.resources('vm', signal)).find((item) => item.vmid === vmid && item.type === 'qemu')
    if (!match?.node) return undefined
    const vm: Vm = {vmid, node: match.node, name: match.name, status: match.status}
    if (!nameUnknown(match)) return vm
    const config = await this.currentConfig(vm, signal)
    return config ? {...vm, name: config.name} : undefined
  }

  /** A VM's config, or undefined when the VM is gone (Proxmox answers 500 "Configuration file ... does not exist"). */
  private async currentConfig(vm: Vm, signal?: AbortSignal): Promise<VmConfig | undefined> {
    try {
      return await this.vmConfig(vm, signal)
    } catch (error) {
      if (error instanceof ProxmoxApiError && error.status === 500 && /does not exist/.test(error.reason ?? '')) return undefined
      throw error
    }
  }

  private async isTemplate(vm: Vm, signal?: AbortSignal): Promise<boolean> {
    return (await this.vmConfig(vm, signal)).template === true
  }

  private vmConfig(vm: Vm, signal?: AbortSignal) {
    return this.connection.call(`config of VM ${vm.vmid}`, VmConfig, (api) => api.nodes.$(vm.node).qemu.$(vm.vmid).config.$get(), signal)
  }

  private vmStatus(vm: Vm, signal?: AbortSignal) {
    return this.connection.call(`status of VM ${vm.vmid}`, VmStatus, (api) => api.nodes.$(vm.node).qemu.$(vm.vmid).status.current.$get(), signal)
  }

  private nodeStorage(node: string, signal?: AbortSignal) {
    return this.connection.call(`storage of node ${node}`, NodeStorage, (api) => api.nodes.$(node).storage.$get(), signal)
  }

  private async addressesInUse(exceptVmid: number, signal?: AbortSignal): Promise<Set<string>> {
    const used = new Set<string>()
    for (const item of await this.resources('vm', signal)) {
      if (!item.vmid || !item.node || item.vmid === exceptVmid || item.template || !hasTag(item.tags, OUTPOST_TAG)) continue
      const address = usedAddress((await this.vmConfig({vmid: item.vmid, node: item.node}, signal)).ipconfig0)
      if (address) used.add(address)
    }
    return used
  }

  private async candidateNodes(signal?: AbortSignal): Promise<string[]> {
    if (this.settings.node !== 'auto') return [this.settings.node]
    const nodes = (await this.resources('node', signal)).filter((item) => item.status === 'online' && item.node)
    return nodes.sort((a, b) => (b.maxmem ?? 0) - (b.mem ?? 0) - ((a.maxmem ?? 0) - (a.mem ?? 0))).map((item) => item.node ?? '')
  }

  /** The template's node and the storage new disks go to (configured, else the template disk's). */
  private async placementStorage(signal?: AbortSignal): Promise<{templateNode: string; storage: string}> {
    const template = await this.vmById(this.settings.templateVmid, signal)
    if (!template) {
      throw new ProvisionError(`template VM ${this.settings.templateVmid} does not exist`, {retryPossible: false})
    }
    const config = await this.vmConfig(template, signal)
    const templateDisk = parseDisk(config[this.settings.disk])
    const storage = (this.settings.clone === 'full' ? this.settings.storage : undefined) ?? templateDisk?.storage
    if (!storage) throw new ProvisionError(`template ${template.vmid} has no disk ${this.settings.disk}`, {retryPossible: false})
    return {templateNode: template.node, storage}
  }

  /** node = "auto": the online node with the most free memory that has the storage (linked clones stay beside the template unless it is shared). */
  private async place(signal?: AbortSignal): Promise<Placement> {
    const {templateNode, storage} = await this.placementStorage(signal)
    if (this.settings.node !== 'auto') return {templateNode, targetNode: this.settings.node, storage}
    for (const node of await this.candidateNodes(signal)) {
      const found = (await this.nodeStorage(node, signal)).find((item) => item.storage === storage && item.active !== false && item.enabled !== false)
      if (!found) continue
      if (this.settings.clone === 'linked' && !found.shared && node !== templateNode) continue
      return {templateNode, targetNode: node, storage}
    }
    throw new ProvisionError(`no online node has storage ${storage}`, {retryPossible: true})
  }
}
