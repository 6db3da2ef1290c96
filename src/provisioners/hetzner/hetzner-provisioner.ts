import {createHash} from 'node:crypto'

import type {Contract} from '../../core/api/schemas.js'
import {describeError} from '../../core/errors.js'
import {
  CONTRACT_LABEL,
  checkClaim,
  healthOfClaim,
  instanceLabels,
  instanceName,
  isManaged,
  MANAGED_LABEL,
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
import {pollUntil} from '../poll.js'
import {provisionWithCleanup} from '../provision-with-cleanup.js'
import {HetznerApi, HetznerApiError} from './api.js'
import {
  ActionAnswer,
  ImageAnswer,
  ImagePage,
  LocationPage,
  ServerAnswer,
  ServerCreated,
  ServerPage,
  ServerTypePage,
  SshKeyAnswer,
  SshKeyPage,
  type Action,
  type Server,
  type ServerType,
  type SshKey,
} from './schemas.js'

/** What the backend needs, from `[provisioner.hetzner]` (see the config schema for each setting). */
export interface HetznerSettings {
  token: string
  apiUrl: string
  /** Image of the servers, a name or an id. */
  image: string
  /** A location (fsn1) or network zone (eu-central); any when undefined. */
  region?: string
  architecture: 'x86' | 'arm'
  /** Only these server types are considered; all that fit when undefined. */
  serverTypes?: readonly string[]
  sshPort: number
  actionTimeoutMs: number
  requestTimeoutMs: number
  /** The largest offering's disk, in GB: the doctor checks that a server type fits it. */
  minimumStorageGb?: number
}
/** Placements tried when Hetzner has no capacity for the cheapest (resource_unavailable): the next cheapest. */
const PLACEMENT_ATTEMPTS = 3

export interface Placement {
  serverType: string
  location: string
  /** Gross price per hour, as Hetzner writes it. */
  priceHourly: string
}

/** OpenSSH's MD5 fingerprint of a public key, the form Hetzner reports and filters by (`aa:bb:...`). */
export function md5Fingerprint(publicKey: string): string | undefined {
  const blob = publicKey.trim().split(/\s+/)[1]
  if (!blob || !/^[A-Za-z0-9+/]+=*$/.test(blob)) return undefined
  return createHash('md5').update(Buffer.from(blob, 'base64')).digest('hex').match(/../g)?.join(':')
}

/**
 * Servers in a Hetzner Cloud project, one per contract: the cheapest server type that fits the contract, in a location
 * of the configured region, with the renter's SSH key (uploaded for the create, removed after), labelled with the
 * contract so a restarted agent finds it. A failed create deletes the server. Cloud capacity is not reported: the
 * project's limits are not in the API.
 */
export class HetznerProvisioner implements Provisioner {
  readonly type = 'hetzner'
  readonly api: HetznerApi
  private readonly provisions = new OneAtATime()
  /** One contract at a time holds each renter key (by fingerprint), from its upload to its removal. */
  private readonly keyTurns = new OneAtATime()

  constructor(private readonly settings: HetznerSettings) {
    this.api = new HetznerApi(settings.apiUrl, settings.token, settings.requestTimeoutMs)
  }

  async provision(contract: Contract, signal: AbortSignal): Promise<ProvisionedInstance> {
    if (contract.gpu_count > 0) throw new ProvisionError('Hetzner Cloud has no GPU server types', {retryPossible: false})
    const name = instanceName(contract.contract_id)
    return provisionWithCleanup(this.provisions, name, signal, {
      attempt: () => this.provisionOnce(contract, name, signal),
      cleanUp: () => this.deleteLeftover(contract.contract_id),
    })
  }

  async find(contractId: string, signal?: AbortSignal): Promise<ProvisionedInstance | undefined> {
    try {
      const server = await this.serverOf(contractId, signal)
      return server && server.status === 'running' && server.public_net.ipv4 ? this.describe(server, contractId) : undefined
    } catch (error) {
      throw toProvisionError(error, `looking up the server of ${contractId}`)
    }
  }

  /** Deletes the contract's servers and waits for the delete actions. Already gone is success; an error answer never is. */
  async terminate(claim: InstanceClaim, signal?: AbortSignal): Promise<void> {
    try {
      const servers = checkClaim(claim, (await this.serversOf(claim.contractId, signal)).map((server) => ({externalId: String(server.id), server})))
      for (const {server} of servers) {
        const deleted = await this.api.json(`deleting server ${server.id}`, ActionAnswer, {method: 'DELETE', path: `/servers/${server.id}`, accept: [404]}, signal)
        if (deleted) await this.waitAction(deleted.action, `delete of server ${server.id}`, signal)
      }
      // A key left by an agent that died between upload and removal.
      await this.removeKeyNamed(instanceName(claim.contractId))
    } catch (error) {
      throw toProvisionError(error, `deleting the server of ${claim.contractId}`)
    }
  }

  async health(claim: InstanceClaim, signal?: AbortSignal): Promise<InstanceHealth> {
    const candidates = async () => (await this.serversOf(claim.contractId, signal)).map((server) => ({externalId: String(server.id), server}))
    return healthOfClaim('server', claim, candidates, ({server}): InstanceHealth => {
      if (server.status !== 'running') return {status: 'unhealthy', details: {server_status: server.status}}
      const uptimeSeconds = Math.max(0, Math.floor((Date.now() - Date.parse(server.created)) / 1000))
      return {status: 'healthy', uptimeSeconds, details: {server_status: server.status}}
    })
  }

  async list(signal?: AbortSignal): Promise<ListedInstance[]> {
    try {
      const servers = await this.api.all('listing servers', ServerPage, '/servers', (page) => page.servers, {label_selector: `${MANAGED_LABEL}=true`}, signal)
      return servers.map((server) => {
        const contractId = server.labels[CONTRACT_LABEL]
        return {externalId: String(server.id), name: server.name, ...(contractId ? {contractId} : {})}
      })
    } catch (error) {
      throw toProvisionError(error, 'listing servers')
    }
  }

  async capacity(): Promise<Capacity | undefined> {
    return undefined
  }

  async verifySetup(signal?: AbortSignal): Promise<SetupCheck[]> {
    const checks: SetupCheck[] = []
    try {
      await this.api.json('listing locations', LocationPage, {method: 'GET', path: '/locations'}, signal)
      checks.push({name: 'hetzner api', ok: true, message: `${this.settings.apiUrl} accepts the token`})
    } catch (error) {
      const refused = error instanceof HetznerApiError && error.status === 401
      checks.push({
        name: 'hetzner api',
        ok: false,
        message: describeError(error),
        remedy: refused ? 'make a Read & Write API token in the project (Security → API tokens) and set OUTPOST_PROVISIONER_HETZNER_TOKEN' : `check that ${this.settings.apiUrl} is reachable`,
      })
      return checks
    }
    try {
      const image = this.settings.image
      // An id is looked up directly (GET /images/{id}); a name through the list, filtered by name and architecture.
      const found = /^\d+$/.test(image)
        ? (await this.api.json(`looking up image ${image}`, ImageAnswer, {method: 'GET', path: `/images/${image}`, accept: [404]}, signal))?.image.architecture ===
          this.settings.architecture
        : (
            await this.api.json(`looking up image ${image}`, ImagePage, {method: 'GET', path: '/images', query: {name: image, architecture: this.settings.architecture}}, signal)
          )?.images.some((item) => item.name === image)
      checks.push(found ? {name: 'hetzner image', ok: true, message: `image ${image} exists`} : {name: 'hetzner image', ok: false, message: `no ${this.settings.architecture} image ${image}`, remedy: 'set [provisioner.hetzner] image to an image name from `hcloud image list`'})
    } catch (error) {
      checks.push({name: 'hetzner image', ok: false, message: describeError(error)})
    }
    try {
      const storage = this.settings.minimumStorageGb ?? 0
      const [cheapest] = await this.placements({cpuCores: 1, memoryMb: 1, storageGb: storage}, signal)
      checks.push({name: 'hetzner server types', ok: true, message: `the cheapest fit for ${storage} GB of disk is ${cheapest?.serverType} in ${cheapest?.location}`})
    } catch (error) {
      checks.push({name: 'hetzner server types', ok: false, message: describeError(error), remedy: 'check region, architecture and server_types in [provisioner.hetzner]'})
    }
    return checks
  }

  /** Every (server type, location) that fits the request, cheapest first. */
  async placements(request: {cpuCores: number; memoryMb: number; storageGb: number}, signal?: AbortSignal): Promise<Placement[]> {
    const region = this.settings.region
    const locations = await this.api.all('listing locations', LocationPage, '/locations', (page) => page.locations, {}, signal)
    const allowed = new Set(locations.filter((location) => region === undefined || location.name === region || location.network_zone === region).map((location) => location.name))
    if (allowed.size === 0) {
      throw new ProvisionError(`no Hetzner location is named ${region} or lies in network zone ${region}`, {retryPossible: false})
    }
    const types = await this.api.all('listing server types', ServerTypePage, '/server_types', (page) => page.server_types, {}, signal)
    const fitting = types.filter(
      (type) =>
        !isDeprecated(type) &&
        type.architecture === this.settings.architecture &&
        (this.settings.serverTypes === undefined || this.settings.serverTypes.includes(type.name)) &&
        type.cores >= request.cpuCores &&
        type.memory * 1024 >= request.memoryMb &&
        type.disk >= request.storageGb,
    )
    const placements = fitting.flatMap((type) =>
      type.prices
        .filter((price) => allowed.has(price.location) && offeredAt(type, price.location))
        .map((price) => ({serverType: type.name, location: price.location, priceHourly: price.price_hourly.gross})),
    )
    if (placements.length === 0) {
      throw new ProvisionError(
        `no ${this.settings.architecture} server type${region ? ` in ${region}` : ''} has ${request.cpuCores} cores, ${request.memoryMb} MB of memory and ${request.storageGb} GB of disk`,
        {retryPossible: false},
      )
    }
    return placements.sort((a, b) => Number(a.priceHourly) - Number(b.priceHourly) || a.serverType.localeCompare(b.serverType) || a.location.localeCompare(b.location))
  }

  // --- provisioning steps ---

  private async provisionOnce(contract: Contract, name: string, signal: AbortSignal): Promise<ProvisionedInstance> {
    const existing = await this.serverOf(contract.contract_id, signal)
    if (existing) return this.describe(await this.waitRunning(existing.id, name, signal), contract.contract_id)
    const placements = await this.placements({cpuCores: contract.cpu_cores, memoryMb: contract.memory_mb, storageGb: contract.storage_gb}, signal)
    const created = await this.withRenterKey(contract, name, signal, (key) => this.create(contract, name, placements, key, signal))
    if (created.action) await this.waitAction(created.action, `create of server ${created.server.id}`, signal)
    const running = await this.waitRunning(created.server.id, name, signal)
    return this.describe(running, contract.contract_id, created.rootPassword)
  }

  /**
   * Runs the create with the renter's key in the project, and removes the key after: Hetzner writes it into the server
   * when the create is accepted, so the project needs it no more. Contracts of one renter key take turns, so one
   * contract never removes the key another is about to use.
   */
  private async withRenterKey<T>(contract: Contract, name: string, signal: AbortSignal, create: (key: SshKey | undefined) => Promise<T>): Promise<T> {
    const publicKey = contract.ssh_pubkey.trim()
    if (!publicKey) return create(undefined)
    return this.keyTurns.run(md5Fingerprint(publicKey) ?? publicKey, async () => {
      const key = await this.uploadKey(contract, name, signal)
      try {
        return await create(key.key)
      } finally {
        if (key.ours) await this.removeKey(key.key.id).catch(() => undefined)
      }
    })
  }

  /** Uploads the renter's key as `outpost-<contract>`; a key already there (same name, or same key) is used instead. */
  private async uploadKey(contract: Contract, name: string, signal: AbortSignal): Promise<{key: SshKey; ours: boolean}> {
    const body = {name, public_key: contract.ssh_pubkey.trim(), labels: instanceLabels(contract.contract_id)}
    try {
      const created = await this.api.json(`uploading the SSH key of ${name}`, SshKeyAnswer, {method: 'POST', path: '/ssh_keys', body}, signal)
      if (created) return {key: created.ssh_key, ours: true}
    } catch (error) {
      if (!(error instanceof HetznerApiError && error.code === 'uniqueness_error')) {
        if (error instanceof HetznerApiError && error.code === 'invalid_input') {
          throw new ProvisionError(`the renter's SSH key was refused: ${error.message}`, {retryPossible: false, cause: error, category: 'ssh_key_refused'})
        }
        throw error
      }
    }
    const named = await this.keyWhere({name}, signal)
    if (named) return {key: named, ours: true}
    // The renter's key is in the project already (another contract of theirs, or the provider's own): use it, keep it.
    const fingerprint = md5Fingerprint(contract.ssh_pubkey)
    const same = fingerprint ? await this.keyWhere({fingerprint}, signal) : undefined
    if (same) return {key: same, ours: false}
    throw new ProvisionError(`uploading the SSH key of ${name}: Hetzner reported it exists, but no key with its name or fingerprint was found`, {retryPossible: true})
  }

  /** Creates the server at the cheapest placement; a placement without capacity moves on to the next cheapest. */
  private async create(
    contract: Contract,
    name: string,
    placements: Placement[],
    key: SshKey | undefined,
    signal: AbortSignal,
  ): Promise<{server: Server; action?: Action; rootPassword?: string}> {
    let lastUnavailable: HetznerApiError | undefined
    for (const placement of placements.slice(0, PLACEMENT_ATTEMPTS)) {
      const body = {
        name,
        server_type: placement.serverType,
        location: placement.location,
        image: this.settings.image,
        ...(key ? {ssh_keys: [key.id]} : {}),
        labels: instanceLabels(contract.contract_id),
        start_after_create: true,
        public_net: {enable_ipv4: true, enable_ipv6: true},
      }
      try {
        const created = await this.api.json(`creating server ${name} (${placement.serverType} in ${placement.location})`, ServerCreated, {method: 'POST', path: '/servers', body}, signal)
        if (created) return {server: created.server, action: created.action, rootPassword: created.root_password ?? undefined}
      } catch (error) {
        if (error instanceof HetznerApiError && (error.code === 'resource_unavailable' || error.code === 'placement_error')) {
          lastUnavailable = error
          continue
        }
        if (error instanceof HetznerApiError && error.code === 'uniqueness_error') {
          // The name is taken: by this contract's server from a create whose answer was lost, or by someone else's.
          const mine = await this.serverOf(contract.contract_id, signal)
          if (mine?.name === name) return {server: mine}
          throw new ProvisionError(`server name ${name} is taken by a server outpost did not make for this contract`, {retryPossible: false, cause: error})
        }
        throw error
      }
    }
    throw new ProvisionError(`no capacity for ${name}: ${lastUnavailable?.message ?? 'Hetzner made no server'}`, {retryPossible: true, cause: lastUnavailable, category: 'no_capacity'})
  }

  /** Polls an action with adaptive backoff; a failed action's error code and message go into the error. */
  private async waitAction(action: Action, what: string, signal?: AbortSignal): Promise<void> {
    let current = action
    if (current.status === 'running') {
      current = await pollUntil(
        async () => {
          const answer = await this.api.json(`status of ${what}`, ActionAnswer, {method: 'GET', path: `/actions/${action.id}`}, signal)
          return answer && answer.action.status !== 'running' ? answer.action : undefined
        },
        {what, timeoutMs: this.settings.actionTimeoutMs, signal},
      )
    }
    if (current.status === 'error') {
      const cause = current.error ? `${current.error.code}: ${current.error.message}` : 'no reason given'
      throw new ProvisionError(`${what} failed (action ${current.id}, ${current.command}): ${cause}`, {retryPossible: true})
    }
  }

  private async waitRunning(id: number, name: string, signal: AbortSignal): Promise<Server> {
    return pollUntil(
      async () => {
        const server = await this.server(String(id), signal)
        if (!server) throw new ProvisionError(`server ${id} (${name}) disappeared while starting`, {retryPossible: true})
        return server.status === 'running' && server.public_net.ipv4 ? server : undefined
      },
      {what: `server ${id} (${name}) running`, timeoutMs: this.settings.actionTimeoutMs, signal},
    )
  }

  /** Deletes the server a failed provision left. */
  private async deleteLeftover(contractId: string): Promise<void> {
    await this.terminate({contractId})
  }

  // --- lookups ---

  private async serverOf(contractId: string, signal?: AbortSignal): Promise<Server | undefined> {
    return (await this.serversOf(contractId, signal))[0]
  }

  /** The servers outpost made for the contract, by their labels, but those already being deleted. */
  private async serversOf(contractId: string, signal?: AbortSignal): Promise<Server[]> {
    const selector = `${CONTRACT_LABEL}=${contractId},${MANAGED_LABEL}=true`
    const answer = await this.api.json('looking up servers by label', ServerPage, {method: 'GET', path: '/servers', query: {label_selector: selector}}, signal)
    return (answer?.servers ?? []).filter((server) => server.labels[CONTRACT_LABEL] === contractId && isManaged(server.labels) && server.status !== 'deleting')
  }

  private async server(id: string, signal?: AbortSignal): Promise<Server | undefined> {
    return (await this.api.json(`reading server ${id}`, ServerAnswer, {method: 'GET', path: `/servers/${id}`, accept: [404]}, signal))?.server
  }

  private async keyWhere(query: Record<string, string>, signal?: AbortSignal): Promise<SshKey | undefined> {
    return (await this.api.json('looking up SSH keys', SshKeyPage, {method: 'GET', path: '/ssh_keys', query}, signal))?.ssh_keys[0]
  }

  private async removeKey(id: number): Promise<void> {
    await this.api.call(`removing SSH key ${id}`, {method: 'DELETE', path: `/ssh_keys/${id}`, accept: [404]})
  }

  private async removeKeyNamed(name: string): Promise<void> {
    const key = await this.keyWhere({name})
    if (key && isManaged(key.labels)) await this.removeKey(key.id)
  }

  private describe(server: Server, contractId: string, rootPassword?: string): ProvisionedInstance {
    const ipv4 = server.public_net.ipv4?.ip
    if (!ipv4) throw new ProvisionError(`server ${server.id} has no public IPv4 address`, {retryPossible: true})
    // Hetzner hands out a /64; the server itself answers on ::1 of it.
    const ipv6 = server.public_net.ipv6?.ip.replace(/::\/64$/, '::1')
    return {
      externalId: String(server.id),
      contractId,
      ipAddress: ipv4,
      ...(ipv6 ? {ipv6Address: ipv6} : {}),
      sshPort: this.settings.sshPort,
      // Only a server made without an SSH key gets a root password; with the renter's key there is nothing to seal.
      ...(rootPassword ? {credentials: {username: 'root', password: rootPassword}} : {}),
      details: {provisioner: 'hetzner', server_type: server.server_type.name, location: server.datacenter.location.name, name: server.name},
    }
  }
}

function isDeprecated(type: ServerType): boolean {
  return type.deprecated === true || Boolean(type.deprecation)
}

/** Whether the type is still offered at the location (answers without `locations` list it by its price alone). */
function offeredAt(type: ServerType, location: string): boolean {
  if (!type.locations) return true
  const entry = type.locations.find((item) => item.name === location)
  return entry !== undefined && !entry.deprecation
}
