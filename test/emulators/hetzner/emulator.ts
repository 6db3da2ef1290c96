import {createHash, randomBytes} from 'node:crypto'
import {createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'

/**
 * A Hetzner Cloud API emulator (https://docs.hetzner.cloud) on loopback HTTP, for the calls the provisioner makes:
 * locations, server types with per-location prices and deprecations, SSH keys, servers with asynchronous actions,
 * label selectors and pagination. It answers as the API does: bodies wrapped in the resource name, errors as
 * `{"error": {"code", "message", "details"}}` with the documented codes, `Authorization: Bearer` checked, and a
 * token bucket announced in RateLimit-Limit / -Remaining / -Reset on every answer (429 rate_limit_exceeded when
 * empty). Faults can be injected: 429s, resource_unavailable on create, failing actions, 5xx on delete.
 */

export interface HetznerFaults {
  /** The next N requests are refused with 429 rate_limit_exceeded, whatever the bucket holds. */
  rateLimited?: number
  /** The next N server creates (in `location`, or anywhere) answer 412 resource_unavailable. */
  resourceUnavailable?: {times: number; location?: string}
  /** The next N actions of this command end in error. */
  actionFails?: {command: 'create_server' | 'delete_server'; times: number; code?: string; message?: string}
  /** The next N server deletes answer 503 service_error. */
  deleteFails?: number
}

export interface EmulatedServer {
  id: number
  name: string
  status: 'initializing' | 'starting' | 'running' | 'off' | 'deleting'
  created: string
  labels: Record<string, string>
  serverType: string
  location: string
  image: string
  sshKeys: number[]
  ipv4?: string
  ipv6?: string
}

export interface EmulatedKey {
  id: number
  name: string
  fingerprint: string
  public_key: string
  labels: Record<string, string>
  created: string
}

interface EmulatedAction {
  id: number
  command: string
  status: 'running' | 'success' | 'error'
  progress: number
  started: string
  finished: string | null
  resources: {id: number; type: string}[]
  error: {code: string; message: string} | null
}

export interface RecordedRequest {
  method: string
  path: string
  query: Record<string, string>
  status: number
}

const LOCATIONS = [
  {id: 1, name: 'fsn1', description: 'Falkenstein DC Park 1', country: 'DE', city: 'Falkenstein', latitude: 50.47612, longitude: 12.370071, network_zone: 'eu-central'},
  {id: 2, name: 'nbg1', description: 'Nuremberg DC Park 1', country: 'DE', city: 'Nuremberg', latitude: 49.452102, longitude: 11.076665, network_zone: 'eu-central'},
  {id: 3, name: 'hel1', description: 'Helsinki DC Park 1', country: 'FI', city: 'Helsinki', latitude: 60.169855, longitude: 24.938379, network_zone: 'eu-central'},
  {id: 4, name: 'ash', description: 'Ashburn, VA', country: 'US', city: 'Ashburn, VA', latitude: 39.045821, longitude: -77.487073, network_zone: 'us-east'},
  {id: 5, name: 'hil', description: 'Hillsboro, OR', country: 'US', city: 'Hillsboro, OR', latitude: 45.54222, longitude: -122.95161, network_zone: 'us-west'},
]

interface TypeSpec {
  id: number
  name: string
  cores: number
  memory: number
  disk: number
  cpu_type: 'shared' | 'dedicated'
  architecture: 'x86' | 'arm'
  /** Gross price per hour by location; a location missing here does not offer the type. */
  hourly: Record<string, number>
  deprecated?: boolean
}

const EU = (price: number) => ({fsn1: price, nbg1: price, hel1: price})
const EVERYWHERE = (price: number, us: number) => ({...EU(price), ash: us, hil: us})

const SERVER_TYPES: TypeSpec[] = [
  {id: 1, name: 'cx11', cores: 1, memory: 2, disk: 20, cpu_type: 'shared', architecture: 'x86', hourly: EU(0.005), deprecated: true},
  {id: 22, name: 'cpx11', cores: 2, memory: 2, disk: 40, cpu_type: 'shared', architecture: 'x86', hourly: EVERYWHERE(0.0082, 0.0089)},
  {id: 104, name: 'cx22', cores: 2, memory: 4, disk: 40, cpu_type: 'shared', architecture: 'x86', hourly: {fsn1: 0.006, nbg1: 0.006, hel1: 0.0058}},
  {id: 45, name: 'cax11', cores: 2, memory: 4, disk: 40, cpu_type: 'shared', architecture: 'arm', hourly: EU(0.0065)},
  {id: 23, name: 'cpx21', cores: 3, memory: 4, disk: 80, cpu_type: 'shared', architecture: 'x86', hourly: EVERYWHERE(0.0151, 0.0161)},
  {id: 105, name: 'cx32', cores: 4, memory: 8, disk: 80, cpu_type: 'shared', architecture: 'x86', hourly: EU(0.0113)},
  {id: 24, name: 'cpx31', cores: 4, memory: 8, disk: 160, cpu_type: 'shared', architecture: 'x86', hourly: EVERYWHERE(0.0273, 0.0289)},
  {id: 96, name: 'ccx13', cores: 2, memory: 8, disk: 80, cpu_type: 'dedicated', architecture: 'x86', hourly: EVERYWHERE(0.0224, 0.0232)},
  {id: 99, name: 'ccx33', cores: 8, memory: 32, disk: 240, cpu_type: 'dedicated', architecture: 'x86', hourly: EVERYWHERE(0.0896, 0.0928)},
]

const IMAGES = [
  {id: 161547269, name: 'ubuntu-24.04', architecture: 'x86'},
  {id: 161547270, name: 'ubuntu-24.04', architecture: 'arm'},
  {id: 114690387, name: 'debian-12', architecture: 'x86'},
]

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = {},
  ) {
    super(message)
  }
}

const HOSTNAME = /^(?=.{1,63}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$/

function fourDecimals(price: number): string {
  return price.toFixed(10)
}

export class HetznerEmulator {
  readonly token = randomBytes(32).toString('hex')
  readonly servers = new Map<number, EmulatedServer>()
  readonly sshKeys = new Map<number, EmulatedKey>()
  readonly actions = new Map<number, EmulatedAction>()
  readonly requests: RecordedRequest[] = []
  readonly faults: HetznerFaults = {}
  /** How long actions run. */
  actionDurationMs = {create_server: 300, delete_server: 150}
  port = 0
  private server: HttpServer | undefined
  private readonly sockets = new Set<Socket>()
  private nextId = 1000
  private tokens: number
  private lastRefill = Date.now()

  /** A bucket of `limit` requests that refills `limit` per `windowSeconds` (Hetzner: 3600 per hour). */
  constructor(readonly rateLimit: {limit: number; windowSeconds: number} = {limit: 3600, windowSeconds: 3600}) {
    this.tokens = rateLimit.limit
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}/v1`
  }

  /** Answers with 429, by the bucket or an injected fault. */
  get rateLimitedAnswers(): number {
    return this.requests.filter((request) => request.status === 429).length
  }

  async start(): Promise<void> {
    const server = createServer((incoming, outgoing) => void this.handle(incoming, outgoing))
    server.on('connection', (socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    this.server = server
    this.port = (server.address() as AddressInfo).port
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise((resolve) => this.server?.close(resolve))
  }

  /** Adds a server outside outpost's control (someone else's), running. */
  addForeignServer(name: string, labels: Record<string, string> = {}): EmulatedServer {
    const server: EmulatedServer = {id: this.id(), name, status: 'running', created: new Date().toISOString(), labels, serverType: 'cx22', location: 'fsn1', image: 'debian-12', sshKeys: []}
    this.assignAddresses(server)
    this.servers.set(server.id, server)
    return server
  }

  /** Uploads a key as the project's owner would. */
  addKey(name: string, publicKey: string): EmulatedKey {
    const key = {id: this.id(), name, public_key: publicKey, fingerprint: fingerprintOf(publicKey) ?? '', labels: {}, created: new Date().toISOString()}
    this.sshKeys.set(key.id, key)
    return key
  }

  // --- HTTP ---

  private async handle(incoming: IncomingMessage, outgoing: ServerResponse): Promise<void> {
    const url = new URL(incoming.url ?? '/', 'http://localhost')
    const query = Object.fromEntries(url.searchParams)
    const method = incoming.method ?? 'GET'
    let status = 200
    let body: unknown
    try {
      const raw = await readBody(incoming)
      this.refill()
      if (this.faults.rateLimited) {
        this.faults.rateLimited--
        throw this.rateLimitError()
      }
      if (this.tokens < 1) throw this.rateLimitError()
      this.tokens -= 1
      if (incoming.headers.authorization !== `Bearer ${this.token}`) throw new ApiError(401, 'unauthorized', 'unable to authenticate')
      let payload: unknown
      if (raw.length > 0) {
        try {
          payload = JSON.parse(raw)
        } catch {
          throw new ApiError(400, 'json_error', 'invalid JSON input in your request')
        }
      }
      ;[status, body] = this.route(method, url.pathname.replace(/^\/v1/, ''), query, payload)
    } catch (error) {
      if (!(error instanceof ApiError)) throw error
      status = error.status
      body = {error: {code: error.code, message: error.message, details: error.details}}
    }
    this.requests.push({method, path: url.pathname, query, status})
    outgoing.writeHead(status, {
      'Content-Type': 'application/json',
      'RateLimit-Limit': String(this.rateLimit.limit),
      'RateLimit-Remaining': String(Math.floor(this.tokens)),
      // When the bucket is full again, as a Unix timestamp.
      'RateLimit-Reset': String(Math.ceil((Date.now() + ((this.rateLimit.limit - this.tokens) * this.rateLimit.windowSeconds * 1000) / this.rateLimit.limit) / 1000)),
    })
    outgoing.end(status === 204 ? undefined : JSON.stringify(body))
  }

  private refill(): void {
    const now = Date.now()
    this.tokens = Math.min(this.rateLimit.limit, this.tokens + ((now - this.lastRefill) / 1000) * (this.rateLimit.limit / this.rateLimit.windowSeconds))
    this.lastRefill = now
  }

  private rateLimitError(): ApiError {
    return new ApiError(429, 'rate_limit_exceeded', `limit of ${this.rateLimit.limit} requests per ${this.rateLimit.windowSeconds === 3600 ? 'hour' : `${this.rateLimit.windowSeconds} s`} reached`)
  }

  private route(method: string, path: string, query: Record<string, string>, payload: unknown): [number, unknown] {
    const page = (key: string, items: unknown[]): [number, unknown] => {
      const perPage = Math.min(50, Math.max(1, Number(query.per_page ?? 25)))
      const pageNumber = Math.max(1, Number(query.page ?? 1))
      const lastPage = Math.max(1, Math.ceil(items.length / perPage))
      const pagination = {page: pageNumber, per_page: perPage, previous_page: pageNumber > 1 ? pageNumber - 1 : null, next_page: pageNumber < lastPage ? pageNumber + 1 : null, last_page: lastPage, total_entries: items.length}
      return [200, {[key]: items.slice((pageNumber - 1) * perPage, pageNumber * perPage), meta: {pagination}}]
    }
    let match: RegExpExecArray | null
    if (method === 'GET' && path === '/locations') return page('locations', LOCATIONS)
    if (method === 'GET' && path === '/server_types') return page('server_types', SERVER_TYPES.map(serverTypeJson))
    if (method === 'GET' && path === '/images') {
      return page(
        'images',
        IMAGES.filter((image) => (query.name === undefined || image.name === query.name) && (query.architecture === undefined || image.architecture === query.architecture)).map((image) => ({...image, type: 'system', status: 'available'})),
      )
    }
    if (method === 'GET' && path === '/ssh_keys') {
      const keys = [...this.sshKeys.values()].filter(
        (key) => (query.name === undefined || key.name === query.name) && (query.fingerprint === undefined || key.fingerprint === query.fingerprint) && matchesSelector(key.labels, query.label_selector),
      )
      return page('ssh_keys', keys)
    }
    if (method === 'POST' && path === '/ssh_keys') return [201, {ssh_key: this.createKey(payload)}]
    if ((match = /^\/ssh_keys\/(\d+)$/.exec(path)) && method === 'DELETE') {
      if (!this.sshKeys.delete(Number(match[1]))) throw new ApiError(404, 'not_found', 'ssh_key not found')
      return [204, undefined]
    }
    if (method === 'GET' && path === '/servers') {
      const servers = [...this.servers.values()].filter((server) => (query.name === undefined || server.name === query.name) && matchesSelector(server.labels, query.label_selector))
      return page('servers', servers.map((server) => this.serverJson(server)))
    }
    if (method === 'POST' && path === '/servers') return [201, this.createServer(payload)]
    if ((match = /^\/servers\/(\d+)$/.exec(path))) {
      const server = this.servers.get(Number(match[1]))
      if (!server) throw new ApiError(404, 'not_found', 'server not found')
      if (method === 'GET') return [200, {server: this.serverJson(server)}]
      if (method === 'DELETE') return [200, {action: this.deleteServer(server)}]
    }
    if ((match = /^\/actions\/(\d+)$/.exec(path)) && method === 'GET') {
      const action = this.actions.get(Number(match[1]))
      if (!action) throw new ApiError(404, 'not_found', 'action not found')
      return [200, {action}]
    }
    throw new ApiError(404, 'not_found', `no route ${method} ${path}`)
  }

  private createKey(payload: unknown): EmulatedKey {
    const input = asRecord(payload)
    const name = input.name
    const publicKey = input.public_key
    const fields: {name: string; messages: string[]}[] = []
    if (typeof name !== 'string' || name === '') fields.push({name: 'name', messages: ['Missing data for required field.']})
    const fingerprint = typeof publicKey === 'string' ? fingerprintOf(publicKey) : undefined
    if (!fingerprint) fields.push({name: 'public_key', messages: ['invalid SSH key']})
    if (fields.length > 0 || typeof name !== 'string' || typeof publicKey !== 'string' || !fingerprint) throw new ApiError(400, 'invalid_input', 'invalid input in fields', {fields})
    const existing = [...this.sshKeys.values()]
    if (existing.some((key) => key.name === name)) throw new ApiError(409, 'uniqueness_error', 'SSH key with the same name already exists', {fields: [{name: 'name'}]})
    if (existing.some((key) => key.fingerprint === fingerprint)) throw new ApiError(409, 'uniqueness_error', 'SSH key with the same fingerprint already exists', {fields: [{name: 'public_key'}]})
    const key = {id: this.id(), name, public_key: publicKey, fingerprint, labels: asLabels(input.labels), created: new Date().toISOString()}
    this.sshKeys.set(key.id, key)
    return key
  }

  private createServer(payload: unknown): unknown {
    const input = asRecord(payload)
    const {name, server_type: serverType, location, image} = input
    if (typeof name !== 'string' || !HOSTNAME.test(name)) throw new ApiError(400, 'invalid_input', 'invalid input in field name', {fields: [{name: 'name', messages: ['must be a valid hostname']}]})
    const type = SERVER_TYPES.find((item) => item.name === serverType)
    if (!type) throw new ApiError(400, 'invalid_input', 'invalid input in field server_type', {fields: [{name: 'server_type', messages: ['server type not found']}]})
    if (typeof location !== 'string' || !LOCATIONS.some((item) => item.name === location)) {
      throw new ApiError(400, 'invalid_input', 'invalid input in field location', {fields: [{name: 'location', messages: ['location not found']}]})
    }
    if (type.hourly[location] === undefined || type.deprecated) throw new ApiError(400, 'invalid_server_type', `server type ${type.name} is not available in ${location}`)
    if (!IMAGES.some((item) => item.name === image && item.architecture === type.architecture)) throw new ApiError(400, 'invalid_input', 'invalid input in field image', {fields: [{name: 'image', messages: ['image not found']}]})
    const keyIds = Array.isArray(input.ssh_keys) ? input.ssh_keys : []
    for (const keyId of keyIds) {
      if (!this.sshKeys.has(Number(keyId))) throw new ApiError(400, 'invalid_input', `ssh_key ${String(keyId)} not found`, {fields: [{name: 'ssh_keys'}]})
    }
    if ([...this.servers.values()].some((server) => server.name === name)) {
      throw new ApiError(409, 'uniqueness_error', 'server name is already used', {fields: [{name: 'name'}]})
    }
    const unavailable = this.faults.resourceUnavailable
    if (unavailable && unavailable.times > 0 && (unavailable.location === undefined || unavailable.location === location)) {
      unavailable.times--
      throw new ApiError(412, 'resource_unavailable', 'error during placement')
    }
    const server: EmulatedServer = {
      id: this.id(),
      name,
      status: 'initializing',
      created: new Date().toISOString(),
      labels: asLabels(input.labels),
      serverType: type.name,
      location,
      image: String(image),
      sshKeys: keyIds.map(Number),
    }
    this.servers.set(server.id, server)
    const action = this.startAction('create_server', server, () => {
      server.status = 'running'
      this.assignAddresses(server)
    }, () => (server.status = 'off'))
    // Hetzner sets a root password only when no SSH key is given.
    return {server: this.serverJson(server), action, next_actions: [], root_password: keyIds.length === 0 ? randomBytes(12).toString('base64url') : null}
  }

  private deleteServer(server: EmulatedServer): EmulatedAction {
    if (this.faults.deleteFails) {
      this.faults.deleteFails--
      throw new ApiError(503, 'service_error', 'service error: please retry')
    }
    server.status = 'deleting'
    return this.startAction('delete_server', server, () => this.servers.delete(server.id), () => (server.status = 'off'))
  }

  private startAction(command: 'create_server' | 'delete_server', server: EmulatedServer, succeed: () => void, fail: () => void): EmulatedAction {
    const action: EmulatedAction = {id: this.id(), command, status: 'running', progress: 0, started: new Date().toISOString(), finished: null, resources: [{id: server.id, type: 'server'}], error: null}
    this.actions.set(action.id, action)
    const fault = this.faults.actionFails
    const fails = fault !== undefined && fault.command === command && fault.times > 0
    if (fails) fault.times--
    setTimeout(() => {
      action.progress = 100
      action.finished = new Date().toISOString()
      if (fails) {
        action.status = 'error'
        action.error = {code: fault.code ?? 'action_failed', message: fault.message ?? 'Action failed'}
        fail()
      } else {
        action.status = 'success'
        succeed()
      }
    }, this.actionDurationMs[command]).unref()
    return action
  }

  private assignAddresses(server: EmulatedServer): void {
    const n = server.id % 250
    server.ipv4 = `203.0.113.${n + 1}`
    server.ipv6 = `2001:db8:${n.toString(16)}::/64`
  }

  private serverJson(server: EmulatedServer): unknown {
    const type = SERVER_TYPES.find((item) => item.name === server.serverType)
    const location = LOCATIONS.find((item) => item.name === server.location)
    return {
      id: server.id,
      name: server.name,
      status: server.status,
      created: server.created,
      labels: server.labels,
      public_net: {
        ipv4: server.ipv4 ? {id: server.id + 1, ip: server.ipv4, blocked: false, dns_ptr: `static.${server.ipv4}.clients.your-server.de`} : null,
        ipv6: server.ipv6 ? {id: server.id + 2, ip: server.ipv6, blocked: false, dns_ptr: []} : null,
        floating_ips: [],
        firewalls: [],
      },
      private_net: [],
      server_type: type ? serverTypeJson(type) : null,
      datacenter: {id: location?.id ?? 0, name: `${server.location}-dc${location?.id ?? 0}`, description: `${location?.city ?? ''} DC`, location},
      image: IMAGES.find((item) => item.name === server.image) ?? null,
      iso: null,
      rescue_enabled: false,
      locked: false,
      backup_window: null,
      outgoing_traffic: 0,
      ingoing_traffic: 0,
      included_traffic: 21_990_232_555_520,
      protection: {delete: false, rebuild: false},
      volumes: [],
      load_balancers: [],
      primary_disk_size: type?.disk ?? 0,
      placement_group: null,
    }
  }

  private id(): number {
    return this.nextId++
  }
}

function serverTypeJson(type: TypeSpec): unknown {
  return {
    id: type.id,
    name: type.name,
    description: type.name.toUpperCase(),
    cores: type.cores,
    memory: type.memory,
    disk: type.disk,
    deprecated: type.deprecated ?? false,
    deprecation: type.deprecated ? {announced: '2024-06-06T08:00:00+00:00', unavailable_after: '2024-09-06T08:00:00+00:00'} : null,
    storage_type: 'local',
    cpu_type: type.cpu_type,
    architecture: type.architecture,
    prices: Object.entries(type.hourly).map(([location, hourly]) => ({
      location,
      price_hourly: {net: fourDecimals(hourly / 1.19), gross: fourDecimals(hourly)},
      price_monthly: {net: fourDecimals((hourly * 730) / 1.19), gross: fourDecimals(hourly * 730)},
      included_traffic: 21_990_232_555_520,
      price_per_tb_traffic: {net: '1.0000000000', gross: '1.1900000000'},
    })),
    locations: Object.keys(type.hourly).map((name) => ({id: LOCATIONS.find((item) => item.name === name)?.id ?? 0, name, deprecation: null})),
  }
}

/** `key=value`, `key==value`, `key!=value`, `key`, `!key`, joined by commas (all must hold). */
function matchesSelector(labels: Record<string, string>, selector: string | undefined): boolean {
  if (!selector) return true
  return selector.split(',').every((term) => {
    const expression = term.trim()
    let match: RegExpExecArray | null
    if ((match = /^([^!=]+)!=(.*)$/.exec(expression))) return labels[match[1] ?? ''] !== match[2]
    if ((match = /^([^!=]+)==?(.*)$/.exec(expression))) return labels[match[1] ?? ''] === match[2]
    if (expression.startsWith('!')) return !(expression.slice(1) in labels)
    return expression in labels
  })
}

function fingerprintOf(publicKey: string): string | undefined {
  const [type, blob] = publicKey.trim().split(/\s+/)
  if (!type?.startsWith('ssh-') && !type?.startsWith('ecdsa-')) return undefined
  if (!blob || !/^[A-Za-z0-9+/]+=*$/.test(blob)) return undefined
  return createHash('md5').update(Buffer.from(blob, 'base64')).digest('hex').match(/../g)?.join(':')
}

function asRecord(value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ApiError(400, 'invalid_input', 'expected a JSON object')
  return value as Record<string, unknown>
}

function asLabels(value: unknown): Record<string, string> {
  if (value === undefined) return {}
  const labels = asRecord(value)
  for (const [key, label] of Object.entries(labels)) {
    if (typeof label !== 'string' || !/^([a-z0-9.-]+\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/.test(key)) {
      throw new ApiError(400, 'invalid_input', `invalid label ${key}`, {fields: [{name: 'labels'}]})
    }
  }
  return labels as Record<string, string>
}

function readBody(incoming: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    incoming.setEncoding('utf8')
    incoming.on('data', (chunk: string) => (text += chunk))
    incoming.on('end', () => resolve(text))
    incoming.on('error', reject)
  })
}
