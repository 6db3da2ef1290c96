import {createServer, type Server} from 'node:https'
import type {IncomingMessage, ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'

import {makeSelfSignedCertificate, type SelfSignedCertificate} from '../tls.js'

/**
 * A Proxmox VE API emulator over real HTTPS, for the calls the provisioner makes. It follows PVE's wire behaviour:
 * `{"data": ...}` bodies with `Content-Type: application/json;charset=UTF-8`, errors as the HTTP reason phrase (a 500
 * whose status line is Proxmox's message, body `{"data":null}`), 400 "Parameter verification failed." with
 * `errors` per parameter, `PVEAPIToken=USER@REALM!TOKENID=SECRET` auth (401 "No ticket" / "authentication failure"),
 * asynchronous tasks with UPIDs, task status running/stopped and exitstatus "OK" or the error, numbered task logs,
 * clones that hold `lock: clone` on a temporary config until the task ends, VMID allocation, and the guest agent's
 * "QEMU guest agent is not running" until the guest has booted.
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
}

type ConfigValue = string | number

export interface EmulatedVm {
  vmid: number
  node: string
  config: Record<string, ConfigValue>
  status: 'running' | 'stopped'
  startedAt?: number
  agentReadyAt?: number
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
  /** What the task does if it is stopped before it ends. */
  onInterrupt?: () => void
}

export interface RecordedRequest {
  method: string
  path: string
  params: Record<string, string>
  authorization?: string
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
const URLENCODED = /^[-%a-zA-Z0-9_.!~*'()]*$/
const DNS_NAME = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/

const hex8 = (value: number) => value.toString(16).toUpperCase().padStart(8, '0')

export class ProxmoxEmulator {
  readonly tokenId: string
  readonly tokenSecret: string
  readonly certificate: SelfSignedCertificate
  readonly vms = new Map<number, EmulatedVm>()
  readonly tasks = new Map<string, Task>()
  readonly requests: RecordedRequest[] = []
  readonly faults: EmulatorFaults = {}
  durations: TaskDurations
  agentDelayMs: number
  private readonly nodes: NonNullable<EmulatorOptions['nodes']>
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
  }

  async stop(): Promise<void> {
    for (const task of this.tasks.values()) clearTimeout(task.timer)
    for (const socket of this.sockets) socket.destroy()
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }

  // --- HTTP ---

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'https://localhost')
    const method = request.method ?? 'GET'
    const params: Record<string, string> = Object.fromEntries(url.searchParams)
    if (method === 'POST' || method === 'PUT') {
      const chunks: Buffer[] = []
      for await (const chunk of request) chunks.push(chunk as Buffer)
      for (const [key, value] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) params[key] = value
    }
    const path = decodeURIComponent(url.pathname)
    this.requests.push({method, path, params, authorization: request.headers.authorization})
    if (this.faults.slowResponseMs) await new Promise((resolve) => setTimeout(resolve, this.faults.slowResponseMs))

    let status = 200
    let reason = 'OK'
    let body: unknown = {data: null}
    try {
      this.authenticate(request.headers.authorization)
      body = {data: this.route(method, path, params)}
    } catch (error) {
      if (!(error instanceof PveError)) throw error
      status = error.status
      reason = error.message
      body = error.errors ? {data: null, errors: error.errors} : {data: null}
    }
    const drop = this.faults.dropAfterHandling
    if (drop && drop.times > 0 && drop.method === method && drop.path.test(path)) {
      drop.times--
      request.socket.destroy()
      return
    }
    const text = JSON.stringify(body)
    // Proxmox puts its error message in the status line; a line break there would be invalid HTTP.
    response.writeHead(status, reason.replaceAll(/[\r\n]+/g, ' '), {
      'Content-Type': 'application/json;charset=UTF-8',
      'Content-Length': Buffer.byteLength(text),
    })
    response.end(text)
  }

  private authenticate(header: string | undefined): void {
    if (!header) throw new PveError(401, 'No ticket')
    const match = /^PVEAPIToken=([^=]+)=(.+)$/.exec(header)
    if (!match || match[1] !== this.tokenId || match[2] !== this.tokenSecret) throw new PveError(401, 'authentication failure')
  }

  private route(method: string, path: string, params: Record<string, string>): unknown {
    const parts = path.replace(/^\/api2\/json\/?/, '').split('/').filter(Boolean)
    const [top, second, third, fourth, fifth] = parts
    if (method === 'GET' && top === 'version' && parts.length === 1) return {version: '8.2.4', release: '8.2', repoid: 'faa83925c9641325'}
    if (top === 'cluster') {
      if (method === 'GET' && second === 'resources') return this.resources(params.type)
      if (method === 'GET' && second === 'nextid') return this.nextId(params.vmid)
    }
    if (top === 'nodes') {
      if (method === 'GET' && parts.length === 1) return this.nodes.map((node) => this.nodeSummary(node.name))
      const node = this.node(second ?? '')
      if (method === 'GET' && third === 'status' && parts.length === 3) return this.nodeStatus(node.name)
      if (method === 'GET' && third === 'storage' && parts.length === 3) return this.nodeStorage(node.name)
      if (third === 'tasks' && fourth) return this.taskRoute(method, node.name, fourth, fifth)
      if (third === 'qemu' && fourth) {
        return this.vmRoute(method, node.name, Number(fourth), parts.slice(4).join('/'), params)
      }
    }
    throw new PveError(501, `Method '${method} /${parts.join('/')}' not implemented`)
  }

  // --- cluster ---

  private resources(type: string | undefined): unknown[] {
    const vms = this.guestsAndTemplates().map((vm) => ({
      id: `qemu/${vm.vmid}`,
      type: 'qemu',
      vmid: vm.vmid,
      node: vm.node,
      // Proxmox shows "VM <vmid>" for a VM without a name, such as a clone whose temporary config has only its lock.
      name: typeof vm.config.name === 'string' ? vm.config.name : `VM ${vm.vmid}`,
      ...(vm.config.lock === undefined ? {} : {lock: vm.config.lock}),
      status: vm.status,
      template: vm.config.template === 1 ? 1 : 0,
      ...(typeof vm.config.tags === 'string' ? {tags: vm.config.tags} : {}),
      maxmem: Number(vm.config.memory ?? 512) * 1024 ** 2,
      mem: vm.status === 'running' ? Number(vm.config.memory ?? 512) * 1024 ** 2 * 0.3 : 0,
      maxcpu: Number(vm.config.cores ?? 1),
      maxdisk: this.diskGb(vm) * GIB,
      disk: 0,
      uptime: vm.startedAt ? Math.floor((Date.now() - vm.startedAt) / 1000) : 0,
    }))
    const nodes = this.nodes.map((node) => ({
      id: `node/${node.name}`,
      type: 'node',
      node: node.name,
      status: 'online',
      maxcpu: node.cpus,
      maxmem: node.memoryMb * 1024 ** 2,
      mem: this.memoryUsed(node.name),
      level: '',
    }))
    const storages = this.nodes.flatMap((node) =>
      node.storages.map((storage) => ({
        id: `storage/${node.name}/${storage.storage}`,
        type: 'storage',
        node: node.name,
        storage: storage.storage,
        status: 'available',
        shared: storage.shared ? 1 : 0,
        maxdisk: storage.totalGb * GIB,
        disk: this.storageUsed(node.name, storage.storage),
      })),
    )
    if (type === 'vm') return vms
    if (type === 'node') return nodes
    if (type === 'storage') return storages
    if (type !== undefined) throw new PveError(400, 'Parameter verification failed.', {type: `value '${type}' does not have a value in the enumeration 'vm, storage, node, sdn'`})
    return [...nodes, ...storages, ...vms]
  }

  private nextId(requested: string | undefined): string {
    if (requested !== undefined) {
      if (this.vms.has(Number(requested))) throw new PveError(400, `VM ${requested} already exists`)
      return requested
    }
    let vmid = 100
    while (this.vms.has(vmid)) vmid++
    const rival = this.faults.nextIdTakenBy
    if (rival) {
      this.faults.nextIdTakenBy = undefined
      this.vms.set(vmid, {vmid, node: this.nodes[0]?.name ?? 'pve', status: 'running', config: {name: rival, memory: '1024', cores: 1, scsi0: 'local-lvm:vm-disk,size=8G'}})
    }
    // Proxmox answers the VMID as a string.
    return String(vmid)
  }

  // --- nodes ---

  private node(name: string) {
    const node = this.nodes.find((item) => item.name === name)
    if (!node) throw new PveError(595, `no such cluster node '${name}'`)
    return node
  }

  private nodeSummary(name: string) {
    const node = this.node(name)
    return {node: name, status: 'online', maxcpu: node.cpus, maxmem: node.memoryMb * 1024 ** 2, mem: this.memoryUsed(name), level: '', ssl_fingerprint: this.fingerprint}
  }

  private nodeStatus(name: string) {
    const node = this.node(name)
    const total = node.memoryMb * 1024 ** 2
    const used = this.memoryUsed(name)
    return {
      memory: {total, used, free: total - used},
      cpuinfo: {cpus: node.cpus, sockets: 1, cores: node.cpus, model: 'QEMU Virtual CPU'},
      uptime: 86_400,
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
      .reduce((sum, vm) => sum + this.diskGb(vm) * GIB, 0)
  }

  private guestsAndTemplates(): EmulatedVm[] {
    return [...this.vms.values()].sort((a, b) => a.vmid - b.vmid)
  }

  private diskGb(vm: EmulatedVm): number {
    return Number(/size=(\d+)G/.exec(String(vm.config.scsi0 ?? ''))?.[1] ?? 0)
  }

  // --- tasks ---

  private startTask(node: string, type: string, id: string, work: {durationMs: number; log: string[]; finish: () => string | undefined; onInterrupt?: () => void; hangs?: boolean}): string {
    const starttime = Math.floor(Date.now() / 1000)
    const pid = this.nextPid++
    const user = this.tokenId
    const upid = `UPID:${node}:${hex8(pid)}:${hex8(pid * 7)}:${hex8(starttime)}:${type}:${id}:${user}:`
    const task: Task = {upid, node, type, id, user, starttime, pid, pstart: pid * 7, status: 'running', log: [...work.log], onInterrupt: work.onInterrupt}
    this.tasks.set(upid, task)
    if (!work.hangs) {
      task.timer = setTimeout(() => {
        const error = work.finish()
        this.endTask(task, error)
      }, work.durationMs)
    }
    return upid
  }

  private endTask(task: Task, error: string | undefined): void {
    task.status = 'stopped'
    task.exitstatus = error ?? 'OK'
    task.log.push(error ? `TASK ERROR: ${error}` : 'TASK OK')
  }

  private taskRoute(method: string, node: string, upid: string, sub: string | undefined): unknown {
    const task = this.tasks.get(upid)
    if (!task || task.node !== node) throw new PveError(500, `unable to parse worker upid '${upid}'`)
    if (method === 'GET' && sub === 'status') {
      return {upid, node, pid: task.pid, pstart: task.pstart, starttime: task.starttime, type: task.type, id: task.id, user: task.user, status: task.status, ...(task.exitstatus ? {exitstatus: task.exitstatus} : {})}
    }
    if (method === 'GET' && sub === 'log') return task.log.map((t, index) => ({n: index + 1, t}))
    if (method === 'DELETE' && sub === undefined) {
      if (task.status === 'running') {
        clearTimeout(task.timer)
        task.onInterrupt?.()
        this.endTask(task, 'interrupted by signal')
      }
      return null
    }
    throw new PveError(501, `Method '${method} tasks/${sub ?? ''}' not implemented`)
  }

  // --- VMs ---

  private vm(node: string, vmid: number): EmulatedVm {
    const vm = this.vms.get(vmid)
    // Proxmox reads the config from the node named in the path; a VM on another node "does not exist" there.
    if (!vm || vm.node !== node) throw new PveError(500, `Configuration file 'nodes/${node}/qemu-server/${vmid}.conf' does not exist`)
    return vm
  }

  private checkLock(vm: EmulatedVm, params: Record<string, string>): void {
    if (vm.config.lock !== undefined && params.skiplock !== '1') throw new PveError(500, `VM is locked (${vm.config.lock})`)
  }

  private vmRoute(method: string, node: string, vmid: number, rest: string, params: Record<string, string>): unknown {
    if (method === 'DELETE' && rest === '') return this.destroyVm(node, vmid, params)
    const vm = this.vm(node, vmid)
    switch (`${method} ${rest}`) {
      case 'GET config':
        return {...vm.config}
      case 'PUT config':
        return this.updateConfig(vm, params)
      case 'POST clone':
        return this.clone(vm, params)
      case 'PUT resize':
        return this.resize(vm, params)
      case 'GET status/current':
        return {
          vmid,
          name: typeof vm.config.name === 'string' ? vm.config.name : `VM ${vmid}`,
          status: vm.status,
          qmpstatus: vm.status,
          uptime: vm.startedAt ? Math.floor((Date.now() - vm.startedAt) / 1000) : 0,
          cpus: Number(vm.config.cores ?? 1),
          maxmem: Number(vm.config.memory ?? 512) * 1024 ** 2,
          agent: Number(vm.config.agent ?? 0),
          ...(vm.config.lock ? {lock: vm.config.lock} : {}),
          ...(vm.config.tags ? {tags: vm.config.tags} : {}),
          ha: {managed: 0},
        }
      case 'POST status/start':
        return this.startVm(vm, params)
      case 'POST status/stop':
        return this.stopVm(vm, 'qmstop', this.durations.stop)
      case 'POST status/shutdown':
        return this.stopVm(vm, 'qmshutdown', this.durations.shutdown)
      case 'GET agent/network-get-interfaces':
        return this.agent(vm, () => ({result: this.interfaces(vm)}))
      case 'POST agent/ping':
        return this.agent(vm, () => ({result: {}}))
      default:
        throw new PveError(501, `Method '${method} /nodes/${node}/qemu/${vmid}/${rest}' not implemented`)
    }
  }

  private updateConfig(vm: EmulatedVm, params: Record<string, string>): null {
    this.checkLock(vm, params)
    if (params.sshkeys !== undefined) {
      if (!URLENCODED.test(params.sshkeys)) throw new PveError(400, 'Parameter verification failed.', {sshkeys: `invalid urlencoded string: ${params.sshkeys}`})
    }
    if (params.memory !== undefined && !/^\d+$/.test(params.memory)) throw new PveError(400, 'Parameter verification failed.', {memory: 'value must be an integer'})
    if (params.cores !== undefined && !/^\d+$/.test(params.cores)) throw new PveError(400, 'Parameter verification failed.', {cores: 'type check (\'integer\') failed'})
    for (const [key, value] of Object.entries(params)) {
      if (key === 'digest' || key === 'skiplock' || key === 'delete') continue
      vm.config[key] = key === 'sshkeys' ? value : /^\d+$/.test(value) && ['cores', 'sockets'].includes(key) ? Number(value) : value
    }
    for (const key of (params.delete ?? '').split(/[,;\s]+/).filter(Boolean)) delete vm.config[key]
    vm.config.digest = `d${Date.now()}`
    return null
  }

  private clone(template: EmulatedVm, params: Record<string, string>): string {
    const newid = Number(params.newid)
    if (!Number.isInteger(newid) || newid < 100) throw new PveError(400, 'Parameter verification failed.', {newid: 'property is missing and it is not optional'})
    const full = params.full === '1'
    if (!full && template.config.template !== 1) throw new PveError(500, 'linked clone is only possible from a template')
    if (!full && params.storage !== undefined) throw new PveError(500, "parameter 'storage' not allowed for linked clones")
    if (params.name !== undefined && !DNS_NAME.test(params.name)) throw new PveError(400, 'Parameter verification failed.', {name: `value does not look like a valid DNS name`})
    const existing = this.vms.get(newid)
    if (existing) throw new PveError(500, `VM ${newid} already exists on node '${existing.node}'`)
    const target = params.target ?? template.node
    this.node(target)
    const storage = params.storage ?? /^([^:]+):/.exec(String(template.config.scsi0))?.[1] ?? 'local-lvm'
    // Proxmox writes a temporary config holding only the lock, and the real one when the copy is done.
    const vm: EmulatedVm = {vmid: newid, node: target, status: 'stopped', config: {lock: 'clone'}}
    this.vms.set(newid, vm)
    const fault = this.faults.cloneFails
    const disk = full ? `${storage}:vm-${newid}-disk-0` : `${storage}:base-${template.vmid}-disk-0/vm-${newid}-disk-0`
    return this.startTask(template.node, 'qmclone', String(template.vmid), {
      durationMs: this.durations.clone,
      log: [`create ${full ? 'full' : 'linked'} clone of drive scsi0 (${String(template.config.scsi0).split(',')[0]})`, ...(fault?.log ?? [])],
      finish: () => {
        if (fault) {
          this.vms.delete(newid)
          return fault.error
        }
        const {template: _template, digest: _digest, ...inherited} = template.config
        vm.config = {...inherited, name: params.name ?? `Copy-of-VM-${template.config.name}`, scsi0: `${disk},size=${this.diskGb(template)}G`, digest: `d${Date.now()}`}
        return undefined
      },
    })
  }

  private resize(vm: EmulatedVm, params: Record<string, string>): string {
    this.checkLock(vm, params)
    const disk = params.disk ?? ''
    const current = vm.config[disk]
    if (typeof current !== 'string') throw new PveError(500, `disk '${disk}' does not exist`)
    const size = /^\+?(\d+)G$/.exec(params.size ?? '')
    if (!size) throw new PveError(400, 'Parameter verification failed.', {size: `value '${params.size}' does not match the regex pattern`})
    const currentGb = Number(/size=(\d+)G/.exec(current)?.[1] ?? 0)
    const wanted = params.size?.startsWith('+') ? currentGb + Number(size[1]) : Number(size[1])
    if (wanted < currentGb) throw new PveError(500, 'shrinking disks is not supported')
    return this.startTask(vm.node, 'resize', String(vm.vmid), {
      durationMs: this.durations.resize,
      log: [`  Size of logical volume pve/vm-${vm.vmid}-disk-0 changed from ${currentGb} GiB to ${wanted} GiB.`],
      finish: () => {
        vm.config[disk] = current.replace(/size=\d+G/, `size=${wanted}G`)
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
    if (vm.config.agent === undefined || String(vm.config.agent).startsWith('0')) throw new PveError(500, 'No QEMU guest agent configured')
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
