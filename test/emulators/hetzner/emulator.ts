import {createHash, randomBytes} from 'node:crypto'
import {createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'

/**
 * A Hetzner Cloud API emulator (https://docs.hetzner.cloud) on loopback HTTP, for the calls the provisioner makes and
 * those Hetzner's own clients (hcloud-cli, hcloud-python) make for the same work: locations, server types with
 * per-location prices and deprecations, images, SSH keys, servers with asynchronous actions, label selectors and
 * pagination. It answers as the API does: bodies wrapped in the resource name, errors as `{"error": {"code",
 * "message", "details"}}` with the documented codes, `Authorization: Bearer` checked, and a token bucket announced in
 * RateLimit-Limit / -Remaining / -Reset on every answer (429 rate_limit_exceeded when empty). Faults can be injected:
 * 429s, resource_unavailable on create, failing actions, 5xx on delete.
 *
 * Sources read for what the docs leave open: the API reference's OpenAPI document (as mirrored in
 * api-evangelist/hetzner, openapi/_original/hetzner-openapi.yml: "ID or name" for `image`, `server_type` and `location`
 * on POST /servers, SSH keys by id or name, the label and label-selector grammar, `invalid_input` as 422, GET /actions
 * taking `id` only), and hcloud-go (hcloud/schema/id_or_name.go: its CLI sends an id as a JSON number, or a name;
 * hcloud/server.go: the location as a string of its id or its name; hcloud/labels.go: the label regexes).
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
  imageId?: number
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
  {id: 161547269, name: 'ubuntu-24.04', architecture: 'x86', description: 'Ubuntu 24.04', os_flavor: 'ubuntu', os_version: '24.04', created: '2024-04-25T13:55:21+00:00'},
  {id: 161547270, name: 'ubuntu-24.04', architecture: 'arm', description: 'Ubuntu 24.04', os_flavor: 'ubuntu', os_version: '24.04', created: '2024-04-25T13:55:21+00:00'},
  {id: 114690387, name: 'debian-12', architecture: 'x86', description: 'Debian 12', os_flavor: 'debian', os_version: '12', created: '2023-06-13T06:00:02+00:00'},
]

type ImageSpec = (typeof IMAGES)[number]

function imageJson(image: ImageSpec): unknown {
  return {
    ...image,
    type: 'system',
    status: 'available',
    image_size: null,
    disk_size: 5,
    bound_to: null,
    created_from: null,
    deprecated: null,
    deleted: null,
    rapid_deploy: true,
    protection: {delete: false},
    labels: {},
  }
}

/** `invalid_input` is a 422 in the API reference's error table. */
const INVALID_INPUT = 422

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
    const ids = url.searchParams.getAll('id')
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
      ;[status, body] = this.route(method, url.pathname.replace(/^\/v1/, ''), query, payload, ids)
    } catch (error) {
      if (!(error instanceof ApiError)) throw error
      status = error.status
      body = {error: {code: error.code, message: error.message, details: error.details}}
    }
    this.requests.push({method, path: url.pathname, query, status})
    outgoing.writeHead(status, {
      // An empty 204 has no content type: hcloud-go reads any JSON content type as a body to decode, and fails on none.
      ...(status === 204 ? {} : {'Content-Type': 'application/json'}),
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

  private route(method: string, path: string, query: Record<string, string>, payload: unknown, ids: string[]): [number, unknown] {
    const page = (key: string, items: unknown[]): [number, unknown] => {
      const perPage = Math.min(50, Math.max(1, Number(query.per_page ?? 25)))
      const pageNumber = Math.max(1, Number(query.page ?? 1))
      const lastPage = Math.max(1, Math.ceil(items.length / perPage))
      const pagination = {page: pageNumber, per_page: perPage, previous_page: pageNumber > 1 ? pageNumber - 1 : null, next_page: pageNumber < lastPage ? pageNumber + 1 : null, last_page: lastPage, total_entries: items.length}
      return [200, {[key]: items.slice((pageNumber - 1) * perPage, pageNumber * perPage), meta: {pagination}}]
    }
    const named = <T extends {name: string}>(items: T[]) => items.filter((item) => query.name === undefined || item.name === query.name)
    const selector = parseSelector(query.label_selector)
    const selected = (labels: Record<string, string>) => selector.every((holds) => holds(labels))
    const one = <T>(what: string, item: T | undefined): T => {
      if (item === undefined) throw new ApiError(404, 'not_found', `${what} not found`)
      return item
    }
    let match: RegExpExecArray | null
    if (method === 'GET' && path === '/locations') return page('locations', named(LOCATIONS))
    if (method === 'GET' && (match = /^\/locations\/(\d+)$/.exec(path))) return [200, {location: one('location', LOCATIONS.find((item) => item.id === Number(match?.[1])))}]
    if (method === 'GET' && path === '/server_types') return page('server_types', named(SERVER_TYPES).map(serverTypeJson))
    if (method === 'GET' && (match = /^\/server_types\/(\d+)$/.exec(path))) return [200, {server_type: serverTypeJson(one('server type', SERVER_TYPES.find((item) => item.id === Number(match?.[1]))))}]
    if (method === 'GET' && path === '/images') {
      const images = named(IMAGES).filter((image) => query.architecture === undefined || image.architecture === query.architecture)
      return page('images', images.map(imageJson))
    }
    if (method === 'GET' && (match = /^\/images\/(\d+)$/.exec(path))) return [200, {image: imageJson(one('image', IMAGES.find((item) => item.id === Number(match?.[1]))))}]
    if (method === 'GET' && path === '/ssh_keys') {
      const keys = named([...this.sshKeys.values()]).filter((key) => (query.fingerprint === undefined || key.fingerprint === query.fingerprint) && selected(key.labels))
      return page('ssh_keys', keys)
    }
    if (method === 'POST' && path === '/ssh_keys') return [201, {ssh_key: this.createKey(payload)}]
    if ((match = /^\/ssh_keys\/(\d+)$/.exec(path))) {
      const key = one('ssh_key', this.sshKeys.get(Number(match[1])))
      if (method === 'GET') return [200, {ssh_key: key}]
      if (method === 'DELETE') {
        this.sshKeys.delete(key.id)
        return [204, undefined]
      }
    }
    if (method === 'GET' && path === '/servers') {
      const servers = named([...this.servers.values()]).filter((server) => selected(server.labels))
      return page('servers', servers.map((server) => this.serverJson(server)))
    }
    if (method === 'POST' && path === '/servers') return [201, this.createServer(payload)]
    if ((match = /^\/servers\/(\d+)(\/actions)?$/.exec(path))) {
      const server = one('server', this.servers.get(Number(match[1])))
      if (method === 'GET' && match[2]) return page('actions', [...this.actions.values()].filter((action) => action.resources.some((resource) => resource.type === 'server' && resource.id === server.id)))
      if (method === 'GET') return [200, {server: this.serverJson(server)}]
      if (method === 'DELETE') return [200, {action: this.deleteServer(server)}]
    }
    // Listing every action of the project was removed on 30 January 2025: GET /actions takes ids.
    if (method === 'GET' && path === '/actions') {
      if (ids.length === 0) throw new ApiError(INVALID_INPUT, 'invalid_input', "invalid input in field 'id': is required", {fields: [{name: 'id', messages: ['is required']}]})
      return page('actions', ids.map((id) => this.actions.get(Number(id))).filter((action) => action !== undefined))
    }
    if ((match = /^\/actions\/(\d+)$/.exec(path)) && method === 'GET') return [200, {action: one('action', this.actions.get(Number(match[1])))}]
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
    if (fields.length > 0 || typeof name !== 'string' || typeof publicKey !== 'string' || !fingerprint) throw new ApiError(INVALID_INPUT, 'invalid_input', 'invalid input in fields', {fields})
    const existing = [...this.sshKeys.values()]
    if (existing.some((key) => key.name === name)) throw new ApiError(409, 'uniqueness_error', 'SSH key with the same name already exists', {fields: [{name: 'name'}]})
    if (existing.some((key) => key.fingerprint === fingerprint)) throw new ApiError(409, 'uniqueness_error', 'SSH key with the same fingerprint already exists', {fields: [{name: 'public_key'}]})
    const key = {id: this.id(), name, public_key: publicKey, fingerprint, labels: asLabels(input.labels), created: new Date().toISOString()}
    this.sshKeys.set(key.id, key)
    return key
  }

  private createServer(payload: unknown): unknown {
    const input = asRecord(payload)
    const {name} = input
    if (typeof name !== 'string' || !HOSTNAME.test(name)) throw invalidField('name', 'must be a valid hostname')
    const type = byIdOrName(SERVER_TYPES, input.server_type)
    if (!type) throw invalidField('server_type', 'server type not found')
    const location = input.location === undefined ? LOCATIONS.find((item) => type.hourly[item.name] !== undefined) : byIdOrName(LOCATIONS, input.location)
    if (!location) throw invalidField('location', 'location not found')
    if (type.hourly[location.name] === undefined || type.deprecated) throw new ApiError(400, 'invalid_server_type', `server type ${type.name} is not available in ${location.name}`)
    // An image name means the image of that name built for the server type's architecture.
    const image = byIdOrName(IMAGES.filter((item) => item.architecture === type.architecture), input.image)
    if (!image) throw invalidField('image', 'image not found')
    const keys = Array.isArray(input.ssh_keys) ? input.ssh_keys : []
    const keyIds: number[] = []
    for (const wanted of keys) {
      const key = byIdOrName([...this.sshKeys.values()], wanted)
      if (!key) throw invalidField('ssh_keys', `ssh key ${String(wanted)} not found`)
      keyIds.push(key.id)
    }
    const labels = asLabels(input.labels)
    if ([...this.servers.values()].some((server) => server.name === name)) {
      throw new ApiError(409, 'uniqueness_error', 'server name is already used', {fields: [{name: 'name'}]})
    }
    const unavailable = this.faults.resourceUnavailable
    if (unavailable && unavailable.times > 0 && (unavailable.location === undefined || unavailable.location === location.name)) {
      unavailable.times--
      throw new ApiError(412, 'resource_unavailable', 'error during placement')
    }
    const server: EmulatedServer = {
      id: this.id(),
      name,
      status: 'initializing',
      created: new Date().toISOString(),
      labels,
      serverType: type.name,
      location: location.name,
      image: image.name,
      imageId: image.id,
      sshKeys: keyIds,
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
      image: ((image) => (image ? imageJson(image) : null))(IMAGES.find((item) => (server.imageId === undefined ? item.name === server.image : item.id === server.imageId))),
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

/**
 * The API reference's label selector language: `k==v` / `k=v`, `k!=v`, `k`, `!k`, `k in (v1,v2)`, `k notin (v1,v2)`,
 * joined by commas, all of which must hold; the commas of a set belong to it. A selector that doesn't parse is
 * invalid input, even when nothing would be listed.
 */
function parseSelector(selector: string | undefined): ((labels: Record<string, string>) => boolean)[] {
  if (!selector) return []
  const terms: string[] = []
  let depth = 0
  let current = ''
  for (const char of selector) {
    if (char === '(') depth++
    if (char === ')') depth--
    if (char === ',' && depth === 0) {
      terms.push(current)
      current = ''
    } else {
      current += char
    }
  }
  terms.push(current)
  return terms.map((raw) => {
    const term = raw.trim()
    let match: RegExpExecArray | null
    if ((match = /^([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(term))) {
      const [, key = '', operator, list = ''] = match
      const values = list.split(',').map((value) => value.trim())
      return (labels) => (key in labels && values.includes(labels[key] ?? '')) === (operator === 'in')
    }
    if ((match = /^([^\s!=(),]+)\s*!=\s*([^\s!=(),]*)$/.exec(term))) {
      const [, key = '', value] = match
      return (labels) => labels[key] !== value
    }
    if ((match = /^([^\s!=(),]+)\s*==?\s*([^\s!=(),]*)$/.exec(term))) {
      const [, key = '', value] = match
      return (labels) => labels[key] === value
    }
    if ((match = /^!\s*([^\s!=(),]+)$/.exec(term))) {
      const key = match[1] ?? ''
      return (labels) => !(key in labels)
    }
    if (/^[^\s!=(),]+$/.test(term)) return (labels) => term in labels
    throw new ApiError(INVALID_INPUT, 'invalid_input', `invalid input in field 'label_selector': unable to parse '${term}'`, {fields: [{name: 'label_selector', messages: [`unable to parse '${term}'`]}]})
  })
}

function fingerprintOf(publicKey: string): string | undefined {
  const [type, blob] = publicKey.trim().split(/\s+/)
  if (!type?.startsWith('ssh-') && !type?.startsWith('ecdsa-')) return undefined
  if (!blob || !/^[A-Za-z0-9+/]+=*$/.test(blob)) return undefined
  return createHash('md5').update(Buffer.from(blob, 'base64')).digest('hex').match(/../g)?.join(':')
}

/** "ID or name": a JSON number or a string of digits is an id (hcloud-go sends ids as numbers), anything else a name. */
function byIdOrName<T extends {id: number; name: string}>(items: T[], wanted: unknown): T | undefined {
  if (typeof wanted === 'number' || (typeof wanted === 'string' && /^\d+$/.test(wanted))) return items.find((item) => item.id === Number(wanted))
  if (typeof wanted === 'string') return items.find((item) => item.name === wanted)
  return undefined
}

function invalidField(field: string, message: string): ApiError {
  return new ApiError(INVALID_INPUT, 'invalid_input', `invalid input in field '${field}': ${message}`, {fields: [{name: field, messages: [message]}]})
}

function asRecord(value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ApiError(INVALID_INPUT, 'invalid_input', 'expected a JSON object')
  return value as Record<string, unknown>
}

/**
 * Labels as the API reference defines them (hcloud-go hcloud/labels.go has the same regexes): a key is an optional DNS
 * subdomain prefix of up to 253 characters and a slash, then a name of up to 63 characters that begins and ends with
 * an alphanumeric and has `-`, `_`, `.` and alphanumerics between; a value is empty or such a name; `hetzner.cloud/` is
 * reserved.
 */
const LABEL_NAME = /^[a-z0-9A-Z](?:[-_.a-z0-9A-Z]{0,61}[a-z0-9A-Z])?$/
const LABEL_PREFIX = /^(?=.{1,253}$)[a-z0-9A-Z](?:[-.a-z0-9A-Z]*[a-z0-9A-Z])?$/

function labelError(key: string, value: unknown): string | undefined {
  const slash = key.lastIndexOf('/')
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined
  const name = key.slice(slash + 1)
  if (prefix === 'hetzner.cloud') return `label key '${key}' uses the reserved prefix hetzner.cloud/`
  if ((prefix !== undefined && !LABEL_PREFIX.test(prefix)) || !LABEL_NAME.test(name)) return `label key '${key}' is not correctly formatted`
  if (typeof value !== 'string' || (value !== '' && !LABEL_NAME.test(value))) return `label value '${String(value)}' (key: ${key}) is not correctly formatted`
  return undefined
}

function asLabels(value: unknown): Record<string, string> {
  if (value === undefined) return {}
  const labels = asRecord(value)
  const messages = Object.entries(labels).flatMap(([key, label]) => labelError(key, label) ?? [])
  if (messages.length > 0) throw new ApiError(INVALID_INPUT, 'invalid_input', `invalid input in field 'labels': ${messages.join('; ')}`, {fields: [{name: 'labels', messages}]})
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
