import {spawnSync} from 'node:child_process'
import {createServer, type Server} from 'node:https'
import type {IncomingMessage, ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'

import {makeSelfSignedCertificate, type SelfSignedCertificate} from '../tls.js'
import {
  CLONE_VM,
  CLUSTER_RESOURCES,
  DESTROY_VM,
  NEXT_ID,
  NO_PARAMETERS,
  ParameterErrors,
  RESIZE_VM,
  SHUTDOWN_VM,
  START_VM,
  STOP_VM,
  TASK_LIST,
  TASK_LOG,
  UPDATE_VM_CONFIG,
  verify,
  VM_CONFIG,
  type RawValue,
  type Schema,
} from './parameters.js'
import {PciError, PciPassthrough, type EmulatedPciDevice} from './pci.js'

/**
 * A Proxmox VE API emulator over real HTTPS, for the calls the provisioner makes. It follows PVE's wire behaviour, as
 * read in its sources (pve-http-server, pve-common, pve-manager, qemu-server; see each place below and parameters.ts):
 * `{"data": ...}` bodies with `Content-Type: application/json;charset=UTF-8`; errors as the HTTP reason phrase (a 500
 * whose status line is Proxmox's message, body `{"data":null}`); parameters verified per method, all errors at once in
 * `400 Parameter verification failed.` with `errors` per parameter; form or JSON request bodies;
 * `PVEAPIToken=USER@REALM!TOKENID=SECRET` auth, a refusal answered after 3 s; asynchronous tasks with UPIDs as
 * PVE::UPID encodes them; numbered task logs; clones that hold `lock: clone` on a temporary config until the task ends;
 * a cluster resource list whose names and states come from pvestatd's last pass; and the guest agent's "QEMU guest
 * agent is not running" until the guest has booted.
 */

export interface TaskDurations {
  clone: number
  resize: number
  start: number
  stop: number
  shutdown: number
  destroy: number
}

export interface EmulatorFaults {
  /** The clone task fails with this error after writing these log lines; the temporary config is removed. */
  cloneFails?: {error: string; log: string[]}
  /** The start task never ends (until stopped with DELETE /tasks/{upid}). */
  startHangs?: boolean
  /** The guest agent never answers (it isn't installed in the template). */
  agentNeverAnswers?: boolean
  /** The next N destroy calls answer 500 with this reason. */
  deleteFails?: {times: number; reason: string}
  /** The next request matching is carried out, then its connection is reset before the answer is written. */
  dropAfterHandling?: {method: string; path: RegExp; times: number}
  /** The next request matching is carried out, and answered 200 with this `data` instead of its own. */
  answerReplaced?: {method: string; path: RegExp; times: number; data: unknown}
  /** Someone else creates a VM with this name at the VMID that the next /cluster/nextid hands out, just after. */
  nextIdTakenBy?: string
  /** Every answer is delayed by this many milliseconds. */
  slowResponseMs?: number
}

export interface EmulatorOptions {
  tokenId?: string
  tokenSecret?: string
  nodes?: {name: string; cpus: number; memoryMb: number; storages: {storage: string; type: string; totalGb: number; shared?: boolean}[]}[]
  template?: {vmid: number; node: string; name: string; diskGb: number; storage: string}
  durations?: Partial<TaskDurations>
  /** Time from a finished start task to the guest agent reporting its address. */
  agentDelayMs?: number
  certificate?: SelfSignedCertificate
  /**
   * How long the host has been up when the emulator starts (default one day). A task's UPID carries its start in
   * clock ticks since boot (100 per second): past 2^32 ticks, about 497 days, that field has 9 hex digits.
   */
  uptimeSeconds?: number
  /**
   * pvestatd's interval. 0 (the default): the cluster resource list shows each VM as a pass made now would. Above 0:
   * the list shows what the last pass saw, every that many milliseconds, as on a real host (10 s there); a VM made
   * since has no name and status "unknown".
   */
  statusIntervalMs?: number
  /** PVE answers a refused authentication after 3 s (pve-http-server AnyEvent.pm: "always delay unauthorized calls"). */
  unauthorizedDelayMs?: number
  /** The PCI devices of the nodes, for passthrough (see pci.ts). */
  pciDevices?: EmulatedPciDevice[]
}

type ConfigValue = string | number

export interface EmulatedVm {
  vmid: number
  node: string
  config: Record<string, ConfigValue>
  status: 'running' | 'stopped'
  startedAt?: number
  agentReadyAt?: number
  /** The host PCI devices the running VM holds. */
  pciPaths?: string[]
}

interface Task {
  upid: string
  node: string
  type: string
  id: string
  user: string
  starttime: number
  pid: number
  pstart: number
  status: 'running' | 'stopped'
  exitstatus?: string
  log: string[]
  timer?: NodeJS.Timeout
  /** Ends the task now, as its timer would. */
  finishNow?: () => void
  /** What the task does if it is stopped before it ends. */
  onInterrupt?: () => void
}

/** What pvestatd last reported of a VM (pve-manager PVE/Service/pvestatd.pm update_qemu_status). */
interface StatusSnapshot {
  name: string
  status: string
  template: number
  uptime: number
  maxcpu: number
  maxmem: number
  mem: number
  maxdisk: number
}

export interface RecordedRequest {
  method: string
  path: string
  params: Record<string, string>
  authorization?: string
  contentType?: string
}

class PveError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: Record<string, string>,
  ) {
    super(message)
  }
}

const GIB = 1024 ** 3
const UNITS: Record<string, number> = {'': 1, K: 1024, M: 1024 ** 2, G: GIB, T: 1024 ** 4}
/** Clock ticks per second, as PVE::ProcFSTools reads process start times. */
const TICKS_PER_SECOND = 100

/** PVE::UPID::encode's `%08X`: at least 8 upper-case hex digits, more when the number needs them. */
const hex8 = (value: number) => value.toString(16).toUpperCase().padStart(8, '0')

/** pve-common JSONSchema.pm format_size: the largest unit that divides the size. */
function formatSize(bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K'] as const) {
    if (bytes % (UNITS[unit] ?? 1) === 0) return `${bytes / (UNITS[unit] ?? 1)}${unit}`
  }
  return String(bytes)
}

function sizeBytes(drive: ConfigValue | undefined): number {
  const match = /(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)(?:,|$)/.exec(String(drive ?? ''))
  return match ? Math.round(Number(match[1]) * (UNITS[match[2] ?? ''] ?? 1)) : 0
}

/**
 * pve-common Tools.pm validate_ssh_public_keys: every non-blank line must satisfy `ssh-keygen -l`; a plain die, so
 * the answer is a 500 (not a parameter error).
 */
function validateSshKeys(urlencoded: string): void {
  for (const line of decodeURIComponent(urlencoded).split('\n')) {
    if (/^\s*$/.test(line)) continue
    const checked = spawnSync('ssh-keygen', ['-l', '-f', '-'], {input: `${line}\n`, stdio: ['pipe', 'ignore', 'ignore']})
    if (checked.status !== 0) throw new PveError(500, 'SSH public key validation error')
  }
}

function parseBody(raw: string, contentType: string | undefined): Record<string, RawValue> {
  const params: Record<string, RawValue> = {}
  if (/^application\/json\b/i.test(contentType ?? '')) {
    let body: unknown
    try {
      body = raw === '' ? {} : JSON.parse(raw)
    } catch {
      throw new PveError(400, 'malformed JSON string')
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new PveError(400, 'Parameter verification failed.', {_root: "type check ('object') failed"})
    for (const [key, value] of Object.entries(body)) {
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') params[key] = value
      else params[key] = JSON.stringify(value)
    }
    return params
  }
  for (const [key, value] of new URLSearchParams(raw)) params[key] = value
  return params
}

export class ProxmoxEmulator {
  readonly tokenId: string
  readonly tokenSecret: string
  readonly certificate: SelfSignedCertificate
  readonly vms = new Map<number, EmulatedVm>()
  readonly tasks = new Map<string, Task>()
  readonly requests: RecordedRequest[] = []
  readonly faults: EmulatorFaults = {}
  /** Called once each answer is written: a test acts between two calls of a client it doesn't drive step by step. */
  afterAnswer: ((request: RecordedRequest) => void) | undefined
  readonly pci: PciPassthrough
  durations: TaskDurations
  agentDelayMs: number
  unauthorizedDelayMs: number
  readonly statusIntervalMs: number
  private readonly nodes: NonNullable<EmulatorOptions['nodes']>
  private readonly bootedAt: number
  private readonly statusSnapshots = new Map<number, StatusSnapshot>()
  private statusTimer: NodeJS.Timeout | undefined
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()
  private nextPid = 4000
  port = 0

  constructor(options: EmulatorOptions = {}) {
    this.tokenId = options.tokenId ?? 'outpost@pve!agent'
    this.tokenSecret = options.tokenSecret ?? '0b6c3f2e-7d41-4a8e-9c55-1f2e3d4c5b6a'
    this.certificate = options.certificate ?? makeSelfSignedCertificate()
    this.nodes = options.nodes ?? [{name: 'pve', cpus: 16, memoryMb: 65_536, storages: [{storage: 'local-lvm', type: 'lvmthin', totalGb: 500}]}]
    this.durations = {clone: 40, resize: 10, start: 30, stop: 20, shutdown: 30, destroy: 20, ...options.durations}
    this.agentDelayMs = options.agentDelayMs ?? 60
    this.unauthorizedDelayMs = options.unauthorizedDelayMs ?? 3000
    this.statusIntervalMs = options.statusIntervalMs ?? 0
    this.pci = new PciPassthrough(options.pciDevices ?? [])
    this.bootedAt = Date.now() - (options.uptimeSeconds ?? 86_400) * 1000
    const template = options.template ?? {vmid: 9000, node: this.nodes[0]?.name ?? 'pve', name: 'ubuntu-cloud', diskGb: 10, storage: 'local-lvm'}
    this.vms.set(template.vmid, {
      vmid: template.vmid,
      node: template.node,
      status: 'stopped',
      config: {
        name: template.name,
        template: 1,
        cores: 1,
        memory: '2048',
        agent: '1',
        scsihw: 'virtio-scsi-pci',
        scsi0: `${template.storage}:base-${template.vmid}-disk-0,size=${template.diskGb}G`,
        ide2: `${template.storage}:cloudinit,media=cdrom`,
        net0: 'virtio=BC:24:11:00:00:01,bridge=vmbr0',
        digest: 'd1',
      },
    })
  }

  get fingerprint(): string {
    return this.certificate.fingerprint256
  }

  /** VMs other than templates. */
  get guests(): EmulatedVm[] {
    return [...this.vms.values()].filter((vm) => vm.config.template !== 1)
  }

  async start(): Promise<void> {
    const server = createServer({key: this.certificate.key, cert: this.certificate.cert}, (request, response) => {
      void this.handle(request, response)
    })
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
    // A client that refuses the certificate closes the connection during the handshake; that is not an error here.
    server.on('tlsClientError', () => {})
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    this.server = server
    this.port = (server.address() as AddressInfo).port
    if (this.statusIntervalMs > 0) {
      this.takeStatusSnapshots()
      this.statusTimer = setInterval(() => this.takeStatusSnapshots(), this.statusIntervalMs)
      this.statusTimer.unref()
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.statusTimer)
    for (const task of this.tasks.values()) clearTimeout(task.timer)
    for (const socket of this.sockets) socket.destroy()
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }

  /** A pvestatd pass now (with statusIntervalMs > 0 they also come on their own). */
  takeStatusSnapshots(): void {
    this.statusSnapshots.clear()
    for (const vm of this.vms.values()) this.statusSnapshots.set(vm.vmid, this.statusOf(vm))
  }

  // --- HTTP ---

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const started = Date.now()
    const url = new URL(request.url ?? '/', 'https://localhost')
    const method = request.method ?? 'GET'
    const contentType = request.headers['content-type']
    const chunks: Buffer[] = []
    for await (const chunk of request) chunks.push(chunk as Buffer)
    const path = decodeURIComponent(url.pathname)

    let status = 200
    let reason = 'OK'
    let body: unknown = {data: null}
    const recorded: RecordedRequest = {method, path, params: {}, authorization: request.headers.authorization, contentType}
    this.requests.push(recorded)
    try {
      // pve-http-server AnyEvent.pm extract_params: the body (PUT and POST only), then the query over it.
      const params = method === 'POST' || method === 'PUT' ? parseBody(Buffer.concat(chunks).toString('utf8'), contentType) : {}
      for (const [key, value] of url.searchParams) params[key] = value
      recorded.params = Object.fromEntries(Object.entries(params).map(([key, value]) => [key, String(value)]))
      if (this.faults.slowResponseMs) await new Promise((resolve) => setTimeout(resolve, this.faults.slowResponseMs))
      this.authenticate(request.headers.authorization)
      body = {data: this.route(method, path, params)}
    } catch (error) {
      if (error instanceof ParameterErrors) {
        status = 400
        reason = error.message
        body = {data: null, errors: error.errors}
      } else if (error instanceof PveError || error instanceof PciError) {
        status = error.status
        reason = error.message
        body = error instanceof PveError && error.errors ? {data: null, errors: error.errors} : {data: null}
      } else {
        throw error
      }
    }
    if (status === 401) {
      const wait = this.unauthorizedDelayMs - (Date.now() - started)
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    }
    const drop = this.faults.dropAfterHandling
    if (drop && drop.times > 0 && drop.method === method && drop.path.test(path)) {
      drop.times--
      request.socket.destroy()
      return
    }
    const replaced = this.faults.answerReplaced
    if (replaced && replaced.times > 0 && replaced.method === method && replaced.path.test(path) && status === 200) {
      replaced.times--
      body = {data: replaced.data}
    }
    const text = JSON.stringify(body)
    // Proxmox puts its error message in the status line; a line break there would be invalid HTTP.
    response.writeHead(status, reason.replaceAll(/[\r\n]+/g, ' '), {
      'Content-Type': 'application/json;charset=UTF-8',
      'Content-Length': Buffer.byteLength(text),
    })
    response.end(text)
    this.afterAnswer?.(recorded)
  }

  private authenticate(header: string | undefined): void {
    if (!header) throw new PveError(401, 'No ticket')
    const match = /^PVEAPIToken=([^=]+)=(.+)$/.exec(header)
    if (!match || match[1] !== this.tokenId || match[2] !== this.tokenSecret) throw new PveError(401, 'authentication failure')
  }

  /** Unknown paths and methods: pve-http-server answers 501 "Method '<METHOD> /<path>' not implemented". */
  private notImplemented(method: string, parts: string[]): PveError {
    return new PveError(501, `Method '${method} /${parts.join('/')}' not implemented`)
  }

  private route(method: string, path: string, raw: Record<string, RawValue>): unknown {
    const parts = path.replace(/^\/api2\/json\/?/, '').split('/').filter(Boolean)
    const [top, second, third, fourth, fifth] = parts
    const params = (schema: Schema) => verify(schema, raw)
    if (method === 'GET' && top === 'version' && parts.length === 1) {
      params(NO_PARAMETERS)
      return {version: '8.2.4', release: '8.2', repoid: 'faa83925c9641325'}
    }
    if (top === 'cluster' && second === 'mapping') {
      const answer = this.pci.route(method, parts, raw)
      if (answer !== undefined) return answer
    }
    if (top === 'cluster' && method === 'GET') {
      if (parts.length === 1) return ['log', 'nextid', 'options', 'resources', 'status', 'tasks'].map((name) => ({name}))
      if (second === 'resources' && parts.length === 2) return this.resources(params(CLUSTER_RESOURCES).type)
      if (second === 'nextid' && parts.length === 2) return this.nextId(params(NEXT_ID).vmid)
    }
    if (top === 'nodes') {
      if (method === 'GET' && parts.length === 1) return this.nodes.map((node) => this.nodeSummary(node.name))
      const node = this.node(second ?? '')
      if (method === 'GET' && parts.length === 2) return ['qemu', 'status', 'storage', 'tasks', 'version'].map((name) => ({name}))
      if (method === 'GET' && third === 'status' && parts.length === 3) return this.nodeStatus(node.name)
      if (method === 'GET' && third === 'version' && parts.length === 3) return {version: '8.2.4', release: '8.2', repoid: 'faa83925c9641325'}
      if (method === 'GET' && third === 'storage' && parts.length === 3) return this.nodeStorage(node.name)
      if (third === 'tasks') {
        if (method === 'GET' && parts.length === 3) return this.taskList(node.name, params(TASK_LIST))
        if (fourth) return this.taskRoute(method, node.name, fourth, fifth, params)
      }
      if (third === 'qemu') {
        if (method === 'GET' && parts.length === 3) return this.guestsAndTemplates().filter((vm) => vm.node === node.name).map((vm) => this.vmListEntry(vm))
        if (fourth) return this.vmRoute(method, node.name, Number(fourth), parts.slice(4).join('/'), params)
      }
    }
    throw this.notImplemented(method, parts)
  }

  // --- cluster ---

  /** What pvestatd reports of a VM: qemu-server QemuServer.pm vmstatus names an unnamed VM "VM <vmid>". */
  private statusOf(vm: EmulatedVm): StatusSnapshot {
    const memory = Number(vm.config.memory ?? 512) * 1024 ** 2
    return {
      name: typeof vm.config.name === 'string' ? vm.config.name : `VM ${vm.vmid}`,
      status: vm.status,
      template: vm.config.template === 1 ? 1 : 0,
      uptime: vm.startedAt ? Math.floor((Date.now() - vm.startedAt) / 1000) : 0,
      maxcpu: Number(vm.config.cores ?? 1),
      maxmem: memory,
      mem: vm.status === 'running' ? Math.round(memory * 0.3) : 0,
      maxdisk: sizeBytes(vm.config.scsi0),
    }
  }

  /**
   * pve-manager PVE/API2/Cluster.pm `resources` builds each VM's entry with PVE/API2Tools.pm `extract_vm_stats`: id,
   * vmid, node and type from the cluster's VM list, `status: 'unknown'`, and name, status, template, uptime, cpu,
   * memory and disk only from the RRD data pvestatd broadcasts every 10 s (PVE/Service/pvestatd.pm, $updatetime);
   * `lock` and `tags` come straight from the config files (PVE::Cluster::get_guest_config_properties). So a clone in
   * progress (qemu-server API2/Qemu.pm clone_vm writes "# qmclone temporary file\nlock: clone\n" first) shows with
   * `lock: clone` and no name until pvestatd's next pass, then as "VM <vmid>"; and after a VM is renamed, made or
   * started, its name and status in this list lag by up to one pass.
   */
  private resources(type: string | undefined): unknown[] {
    const vms = this.guestsAndTemplates().map((vm) => {
      const snapshot = this.statusIntervalMs > 0 ? this.statusSnapshots.get(vm.vmid) : this.statusOf(vm)
      return {
        id: `qemu/${vm.vmid}`,
        vmid: vm.vmid,
        node: vm.node,
        type: 'qemu',
        status: 'unknown',
        ...(snapshot ? {...snapshot, cpu: 0, disk: 0, netin: 0, netout: 0, diskread: 0, diskwrite: 0} : {}),
        ...(vm.config.lock === undefined ? {} : {lock: vm.config.lock}),
        ...(typeof vm.config.tags === 'string' ? {tags: vm.config.tags} : {}),
      }
    })
    const nodes = this.nodes.map((node) => ({...this.nodeStats(node.name), level: ''}))
    const storages = this.nodes.flatMap((node) =>
      node.storages.map((storage) => ({
        id: `storage/${node.name}/${storage.storage}`,
        storage: storage.storage,
        node: node.name,
        type: 'storage',
        plugintype: storage.type,
        status: 'available',
        shared: storage.shared ? 1 : 0,
        content: 'images,rootdir',
        maxdisk: storage.totalGb * GIB,
        disk: this.storageUsed(node.name, storage.storage),
      })),
    )
    if (type === 'vm') return vms
    if (type === 'node') return nodes
    if (type === 'storage') return storages
    if (type === 'sdn') return []
    return [...nodes, ...storages, ...vms]
  }

  /** pve-manager PVE/API2/Cluster.pm `nextid`: a taken VMID is a parameter error; the answer is the VMID as text. */
  private nextId(requested: string | undefined): string {
    if (requested !== undefined) {
      if (this.vms.has(Number(requested))) throw new ParameterErrors({vmid: `VM ${requested} already exists`})
      return requested
    }
    let vmid = 100
    while (this.vms.has(vmid)) vmid++
    const rival = this.faults.nextIdTakenBy
    if (rival) {
      this.faults.nextIdTakenBy = undefined
      this.vms.set(vmid, {vmid, node: this.nodes[0]?.name ?? 'pve', status: 'running', config: {name: rival, memory: '1024', cores: 1, scsi0: 'local-lvm:vm-disk,size=8G'}})
    }
    return String(vmid)
  }

  // --- nodes ---

  private node(name: string) {
    const node = this.nodes.find((item) => item.name === name)
    if (!node) throw new PveError(595, `no such cluster node '${name}'`)
    return node
  }

  private uptimeSeconds(): number {
    return Math.floor((Date.now() - this.bootedAt) / 1000)
  }

  /** pve-manager PVE/API2Tools.pm extract_node_stats, as GET /nodes and /cluster/resources show a node. */
  private nodeStats(name: string) {
    const node = this.node(name)
    return {
      id: `node/${name}`,
      node: name,
      type: 'node',
      status: 'online',
      uptime: this.uptimeSeconds(),
      cpu: 0.02,
      maxcpu: node.cpus,
      mem: this.memoryUsed(name),
      maxmem: node.memoryMb * 1024 ** 2,
      disk: 10 * GIB,
      maxdisk: 100 * GIB,
    }
  }

  private nodeSummary(name: string) {
    return {...this.nodeStats(name), level: '', ssl_fingerprint: this.fingerprint}
  }

  private nodeStatus(name: string) {
    const node = this.node(name)
    const total = node.memoryMb * 1024 ** 2
    const used = this.memoryUsed(name)
    return {
      memory: {total, used, free: total - used},
      cpuinfo: {cpus: node.cpus, sockets: 1, cores: node.cpus, model: 'QEMU Virtual CPU'},
      uptime: this.uptimeSeconds(),
      pveversion: 'pve-manager/8.2.4/faa83925c9641325',
      rootfs: {total: 100 * GIB, used: 10 * GIB, free: 90 * GIB, avail: 90 * GIB},
    }
  }

  private nodeStorage(name: string) {
    return this.node(name).storages.map((storage) => {
      const total = storage.totalGb * GIB
      const used = this.storageUsed(name, storage.storage)
      return {storage: storage.storage, type: storage.type, content: 'images,rootdir', active: 1, enabled: 1, shared: storage.shared ? 1 : 0, total, used, avail: total - used, used_fraction: used / total}
    })
  }

  private memoryUsed(node: string): number {
    return 2 * GIB + this.guests.filter((vm) => vm.node === node && vm.status === 'running').reduce((sum, vm) => sum + Number(vm.config.memory ?? 0) * 1024 ** 2, 0)
  }

  private storageUsed(node: string, storage: string): number {
    return this.guestsAndTemplates()
      .filter((vm) => vm.node === node && String(vm.config.scsi0 ?? '').startsWith(`${storage}:`))
      .reduce((sum, vm) => sum + sizeBytes(vm.config.scsi0), 0)
  }

  private guestsAndTemplates(): EmulatedVm[] {
    return [...this.vms.values()].sort((a, b) => a.vmid - b.vmid)
  }

  // --- tasks ---

  private startTask(node: string, type: string, id: string, work: {durationMs: number; log: string[]; finish: () => string | undefined; onInterrupt?: () => void; hangs?: boolean}): string {
    const starttime = Math.floor(Date.now() / 1000)
    const pid = this.nextPid++
    // The worker's start in clock ticks since boot (PVE::ProcFSTools::read_proc_starttime), as PVE::UPID::encode writes it.
    const pstart = Math.floor(((Date.now() - this.bootedAt) / 1000) * TICKS_PER_SECOND)
    const user = this.tokenId
    const upid = `UPID:${node}:${hex8(pid)}:${hex8(pstart)}:${hex8(starttime)}:${type}:${id}:${user}:`
    const task: Task = {upid, node, type, id, user, starttime, pid, pstart, status: 'running', log: [...work.log], onInterrupt: work.onInterrupt}
    this.tasks.set(upid, task)
    if (!work.hangs) {
      task.finishNow = () => {
        clearTimeout(task.timer)
        task.finishNow = undefined
        let error: string | undefined
        try {
          error = work.finish()
        } catch (failure) {
          error = failure instanceof Error ? failure.message : String(failure)
        }
        this.endTask(task, error)
      }
      task.timer = setTimeout(task.finishNow, work.durationMs)
    }
    return upid
  }

  /** Ends a running task now, for a test that holds one open with a long duration and must not race its timer. */
  finishTask(upid: string): void {
    const finish = this.tasks.get(upid)?.finishNow
    if (!finish) throw new Error(`no running task ${upid} with a timer`)
    finish()
  }

  private endTask(task: Task, error: string | undefined): void {
    task.status = 'stopped'
    task.exitstatus = error ?? 'OK'
    task.log.push(error ? `TASK ERROR: ${error}` : 'TASK OK')
  }

  /** pve-manager PVE/API2/Tasks.pm: an unknown task is a parameter error on `upid`; a token's task names it apart. */
  private taskRoute(method: string, node: string, upid: string, sub: string | undefined, params: (schema: Schema) => Record<string, string>): unknown {
    const task = this.tasks.get(upid)
    if (!/^UPID:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8}:[^:\s/]+:[^:\s/]*:[^:\s/]+:$/.test(upid)) {
      throw new ParameterErrors({upid: 'unable to parse worker upid'})
    }
    if (!task || task.node !== node) throw new ParameterErrors({upid: 'no such task'})
    if (method === 'GET' && sub === undefined) return [{name: 'log'}, {name: 'status'}]
    if (method === 'GET' && sub === 'status') {
      params(NO_PARAMETERS)
      const [user, tokenid] = task.user.split('!')
      return {
        upid,
        node,
        pid: task.pid,
        pstart: task.pstart,
        starttime: task.starttime,
        type: task.type,
        id: task.id,
        user,
        ...(tokenid ? {tokenid} : {}),
        status: task.status,
        ...(task.exitstatus ? {exitstatus: task.exitstatus} : {}),
      }
    }
    if (method === 'GET' && sub === 'log') {
      const {start = '0', limit = '50'} = params(TASK_LOG)
      return task.log.slice(Number(start), Number(start) + Number(limit)).map((t, index) => ({n: Number(start) + index + 1, t}))
    }
    if (method === 'DELETE' && sub === undefined) {
      params(NO_PARAMETERS)
      if (task.status === 'running') {
        clearTimeout(task.timer)
        task.finishNow = undefined
        task.onInterrupt?.()
        this.endTask(task, 'interrupted by signal')
      }
      return null
    }
    throw this.notImplemented(method, ['nodes', node, 'tasks', upid, ...(sub ? [sub] : [])])
  }

  private taskList(node: string, params: Record<string, string>): unknown[] {
    return [...this.tasks.values()]
      .filter((task) => task.node === node && (params.vmid === undefined || task.id === params.vmid))
      .sort((a, b) => b.starttime - a.starttime)
      .slice(Number(params.start ?? 0), Number(params.start ?? 0) + Number(params.limit ?? 50))
      .map((task) => ({upid: task.upid, node, pid: task.pid, pstart: task.pstart, starttime: task.starttime, type: task.type, id: task.id, user: task.user, ...(task.exitstatus ? {status: task.exitstatus} : {})}))
  }

  // --- VMs ---

  private vm(node: string, vmid: number): EmulatedVm {
    const vm = this.vms.get(vmid)
    // Proxmox reads the config from the node named in the path; a VM on another node "does not exist" there.
    if (!vm || vm.node !== node) throw new PveError(500, `Configuration file 'nodes/${node}/qemu-server/${vmid}.conf' does not exist`)
    return vm
  }

  /** PVE::AbstractConfig check_lock; skiplock is for root@pam alone (API2/Qemu.pm), never for a token. */
  private checkLock(vm: EmulatedVm, params: Record<string, string>): void {
    if (params.skiplock === '1') throw new ParameterErrors({skiplock: 'Only root may use this option.'})
    if (vm.config.lock !== undefined) throw new PveError(500, `VM is locked (${vm.config.lock})`)
  }

  private vmListEntry(vm: EmulatedVm) {
    const status = this.statusOf(vm)
    return {
      vmid: vm.vmid,
      name: status.name,
      status: vm.status,
      uptime: status.uptime,
      cpus: status.maxcpu,
      maxmem: status.maxmem,
      mem: status.mem,
      maxdisk: status.maxdisk,
      ...(vm.config.template === 1 ? {template: 1} : {}),
      ...(vm.config.lock ? {lock: vm.config.lock} : {}),
      ...(vm.config.tags ? {tags: vm.config.tags} : {}),
    }
  }

  private vmRoute(method: string, node: string, vmid: number, rest: string, params: (schema: Schema) => Record<string, string>): unknown {
    if (method === 'DELETE' && rest === '') return this.destroyVm(node, vmid, params(DESTROY_VM))
    const vm = this.vm(node, vmid)
    switch (`${method} ${rest}`) {
      case 'GET ':
        return ['config', 'status', 'agent', 'resize', 'clone', 'pending'].map((subdir) => ({subdir}))
      case 'GET config': {
        params(VM_CONFIG)
        // qemu-server API2/Qemu.pm vm_config: the password is never shown.
        const {cipassword, ...config} = vm.config
        return cipassword === undefined ? config : {...config, cipassword: '**********'}
      }
      case 'PUT config':
        return this.updateConfig(vm, params(UPDATE_VM_CONFIG))
      case 'POST clone':
        return this.clone(vm, params(CLONE_VM))
      case 'PUT resize':
        return this.resize(vm, params(RESIZE_VM))
      case 'GET status':
        return ['current', 'start', 'stop', 'shutdown'].map((subdir) => ({subdir}))
      case 'GET status/current': {
        const status = this.statusOf(vm)
        return {
          vmid,
          name: status.name,
          status: vm.status,
          qmpstatus: vm.status,
          uptime: status.uptime,
          cpus: status.maxcpu,
          maxmem: status.maxmem,
          mem: status.mem,
          maxdisk: status.maxdisk,
          agent: Number(String(vm.config.agent ?? '0').replace(/^enabled=/, '').startsWith('1')),
          ...(vm.config.lock ? {lock: vm.config.lock} : {}),
          ...(vm.config.tags ? {tags: vm.config.tags} : {}),
          ...(vm.config.template === 1 ? {template: 1} : {}),
          ha: {managed: 0},
        }
      }
      case 'POST status/start':
        return this.startVm(vm, params(START_VM))
      case 'POST status/stop':
        params(STOP_VM)
        return this.stopVm(vm, 'qmstop', this.durations.stop)
      case 'POST status/shutdown':
        params(SHUTDOWN_VM)
        return this.stopVm(vm, 'qmshutdown', this.durations.shutdown)
      case 'GET agent':
        return ['network-get-interfaces', 'ping', 'info', 'get-osinfo'].map((name) => ({name}))
      case 'GET agent/network-get-interfaces':
        return this.agent(vm, () => ({result: this.interfaces(vm)}))
      case 'POST agent/ping':
        return this.agent(vm, () => ({result: {}}))
      default:
        throw this.notImplemented(method, ['nodes', node, 'qemu', String(vmid), ...rest.split('/').filter(Boolean)])
    }
  }

  private updateConfig(vm: EmulatedVm, params: Record<string, string>): null {
    this.checkLock(vm, params)
    if (params.sshkeys !== undefined) validateSshKeys(params.sshkeys)
    this.pci.checkUpdate(params)
    for (const [key, value] of Object.entries(params)) {
      if (['digest', 'skiplock', 'delete', 'revert', 'force', 'background_delay'].includes(key)) continue
      vm.config[key] = /^\d+$/.test(value) && ['cores', 'sockets', 'vcpus', 'balloon'].includes(key) ? Number(value) : value
    }
    for (const key of (params.delete ?? '').split(/[,;\s]+/).filter(Boolean)) delete vm.config[key]
    vm.config.digest = `d${Date.now()}`
    return null
  }

  /** qemu-server API2/Qemu.pm clone_vm: checks before the worker, the copy in it. */
  private clone(template: EmulatedVm, params: Record<string, string>): string {
    const newid = Number(params.newid)
    const target = params.target ?? template.node
    this.node(target)
    if (this.vms.get(newid)?.node === target) throw new PveError(500, `unable to create VM ${newid}: config file already exists`)
    if (template.config.lock !== undefined) throw new PveError(500, `VM is locked (${template.config.lock})`)
    // A template is cloned linked unless `full` says otherwise; any other VM is copied.
    const full = params.full === undefined ? template.config.template !== 1 : params.full === '1'
    const volume = String(template.config.scsi0).split(',')[0] ?? ''
    if (!full && template.config.template !== 1) throw new PveError(500, `Linked clone feature is not supported for '${volume}' (scsi0)`)
    if (params.storage !== undefined && !full) throw new PveError(500, "parameter 'storage' not allowed for linked clones")
    if (params.format !== undefined && !full) throw new PveError(500, "parameter 'format' not allowed for linked clones")
    const storage = params.storage ?? /^([^:]+):/.exec(volume)?.[1] ?? 'local-lvm'
    const fault = this.faults.cloneFails
    const disk = full ? `${storage}:vm-${newid}-disk-0` : `${storage}:base-${template.vmid}-disk-0/vm-${newid}-disk-0`
    // The worker first writes a temporary config holding only the lock; pmxcfs refuses it when the VMID lives on
    // another node. The real config comes when the copy is done.
    const takenElsewhere = this.vms.has(newid)
    const vm: EmulatedVm = {vmid: newid, node: target, status: 'stopped', config: {lock: 'clone'}}
    if (!takenElsewhere) this.vms.set(newid, vm)
    return this.startTask(template.node, 'qmclone', String(template.vmid), {
      durationMs: takenElsewhere ? 0 : this.durations.clone,
      log: [`create ${full ? 'full' : 'linked'} clone of drive scsi0 (${volume})`, ...(fault?.log ?? [])],
      finish: () => {
        if (takenElsewhere) return `clone failed: unable to create VM ${newid}: config file already exists`
        if (fault) {
          this.vms.delete(newid)
          return fault.error
        }
        const {template: _template, digest: _digest, ...inherited} = template.config
        vm.config = {...inherited, name: params.name ?? `Copy-of-VM-${template.config.name}`, scsi0: `${disk},size=${formatSize(sizeBytes(template.config.scsi0))}`, digest: `d${Date.now()}`}
        return undefined
      },
    })
  }

  /** qemu-server API2/Qemu.pm resize_vm: the size is checked by the schema, the rest in the worker. */
  private resize(vm: EmulatedVm, params: Record<string, string>): string {
    if (params.skiplock === '1') throw new ParameterErrors({skiplock: 'Only root may use this option.'})
    const disk = params.disk ?? ''
    const size = /^(\+)?(\d+(?:\.\d+)?)([KMGT])?$/.exec(params.size ?? '')
    return this.startTask(vm.node, 'resize', String(vm.vmid), {
      durationMs: this.durations.resize,
      log: [],
      finish: () => {
        if (vm.config.lock !== undefined) return `VM is locked (${vm.config.lock})`
        const current = vm.config[disk]
        if (typeof current !== 'string') return `disk '${disk}' does not exist`
        const currentBytes = sizeBytes(current)
        const wanted = Math.floor(Number(size?.[2] ?? 0) * (UNITS[size?.[3] ?? ''] ?? 1) + (size?.[1] ? currentBytes : 0))
        if (wanted < currentBytes) return 'shrinking disks is not supported'
        vm.config[disk] = current.replace(/size=[^,]+/, `size=${formatSize(wanted)}`)
        return undefined
      },
    })
  }

  private startVm(vm: EmulatedVm, params: Record<string, string>): string {
    this.checkLock(vm, params)
    if (vm.config.template === 1) throw new PveError(500, 'you can\'t start a vm if it\'s a template')
    if (vm.status === 'running') throw new PveError(500, `VM ${vm.vmid} already running`)
    return this.startTask(vm.node, 'qmstart', String(vm.vmid), {
      durationMs: this.durations.start,
      log: [],
      hangs: this.faults.startHangs,
      finish: () => {
        const busy = new Map(this.guests.filter((other) => other.status === 'running' && other.node === vm.node).flatMap((other) => (other.pciPaths ?? []).map((path) => [path, other.vmid] as const)))
        const devices = this.pci.devicesForStart(vm.vmid, vm.node, vm.config, busy)
        if ('error' in devices) return devices.error
        vm.pciPaths = devices.paths
        vm.status = 'running'
        vm.startedAt = Date.now()
        vm.agentReadyAt = Date.now() + this.agentDelayMs
        return undefined
      },
    })
  }

  private stopVm(vm: EmulatedVm, type: string, durationMs: number): string {
    return this.startTask(vm.node, type, String(vm.vmid), {
      durationMs,
      log: [],
      finish: () => {
        vm.status = 'stopped'
        vm.startedAt = undefined
        vm.agentReadyAt = undefined
        vm.pciPaths = undefined
        return undefined
      },
    })
  }

  private destroyVm(node: string, vmid: number, params: Record<string, string>): string {
    const fault = this.faults.deleteFails
    if (fault && fault.times > 0) {
      fault.times--
      throw new PveError(500, fault.reason)
    }
    const vm = this.vm(node, vmid)
    this.checkLock(vm, params)
    if (vm.status === 'running') throw new PveError(500, `VM ${vmid} is running - destroy failed`)
    return this.startTask(node, 'qmdestroy', String(vmid), {
      durationMs: this.durations.destroy,
      log: [`  Logical volume "vm-${vmid}-disk-0" successfully removed.`],
      finish: () => {
        this.vms.delete(vmid)
        return undefined
      },
    })
  }

  private agent(vm: EmulatedVm, answer: () => unknown): unknown {
    if (vm.status !== 'running') throw new PveError(500, `VM ${vm.vmid} is not running`)
    if (!/^(enabled=)?(1|on|yes|true)\b/i.test(String(vm.config.agent ?? ''))) throw new PveError(500, 'No QEMU guest agent configured')
    if (this.faults.agentNeverAnswers || vm.agentReadyAt === undefined || Date.now() < vm.agentReadyAt) throw new PveError(500, 'QEMU guest agent is not running')
    return answer()
  }

  private interfaces(vm: EmulatedVm) {
    const configured = /ip=(\d+\.\d+\.\d+\.\d+)\/(\d+)/.exec(String(vm.config.ipconfig0 ?? ''))
    const ipv4 = configured?.[1] ?? `10.10.${Math.floor(vm.vmid / 250) % 250}.${(vm.vmid % 250) + 2}`
    const suffix = vm.vmid.toString(16)
    return [
      {name: 'lo', 'hardware-address': '00:00:00:00:00:00', 'ip-addresses': [{'ip-address': '127.0.0.1', 'ip-address-type': 'ipv4', prefix: 8}, {'ip-address': '::1', 'ip-address-type': 'ipv6', prefix: 128}]},
      {
        name: 'eth0',
        'hardware-address': 'bc:24:11:00:00:02',
        'ip-addresses': [
          {'ip-address': ipv4, 'ip-address-type': 'ipv4', prefix: Number(configured?.[2] ?? 24)},
          {'ip-address': `2001:db8::${suffix}`, 'ip-address-type': 'ipv6', prefix: 64},
          {'ip-address': `fe80::be24:11ff:fe00:${suffix}`, 'ip-address-type': 'ipv6', prefix: 64},
        ],
      },
    ]
  }
}
