import {randomBytes} from 'node:crypto'
import {statfsSync} from 'node:fs'
import {createConnection} from 'node:net'
import {networkInterfaces} from 'node:os'

import type {Contract} from '../../core/api/schemas.js'
import type {GpuConfig} from '../../core/config/schema.js'
import {describeError} from '../../core/errors.js'
import type {GpuUnit} from '../../gpu/allocator.js'
import {checkContainerRuntime, CONTAINER_RUNTIME_REMEDY, findNvidiaHook} from '../../gpu/container-runtime.js'
import {localGpuUnits} from '../../gpu/devices.js'
import {describeInventory, readGpuInventory} from '../../gpu/inventory.js'
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
import {pollUntil, PollTimeoutError} from '../poll.js'
import {provisionWithCleanup} from '../provision-with-cleanup.js'
import {demultiplexLogs, DockerApiError, DockerEngine} from './engine.js'
import {ContainerCreated, ContainerInspect, ContainerList, EngineInfo, ImageInspect, NetworkCreated, NetworkList, type NetworkSummary} from './schemas.js'

/** What the backend needs, from `[provisioner.docker]` (see the config schema for each setting). */
export interface DockerSettings {
  /** Unix socket of the Engine API. */
  socket: string
  /** Image of the containers; it must already be on the engine. */
  image: string
  command?: readonly string[]
  /** Container port published for the renter. */
  servicePort: number
  bindAddress: string
  publicAddress?: string
  username: string
  passwordEnv: string
  sshKeyEnv: string
  startupTimeoutMs: number
  /** Graceful stop time before the engine kills a container, in whole seconds as the Engine API takes it. */
  stopTimeoutSeconds: number
  requestTimeoutMs: number
  /** `[gpu]`: which of this host's GPUs containers may be given, and their published names. */
  gpu: GpuConfig
}

/**
 * What renter root keeps of Docker's default capabilities: enough for an sshd image (log in, change to the user,
 * chroot for privilege separation, bind port 22, chown its files). Dropped from the defaults: NET_RAW (raw sockets:
 * ARP and IP spoofing on the bridge), MKNOD, SETFCAP, SETPCAP and FSETID.
 */
export const RENTER_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SETUID', 'SETGID', 'KILL', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'AUDIT_WRITE'] as const
/** Processes and threads per container: a fork bomb stops here instead of exhausting the host's pids. */
export const PIDS_LIMIT = 4096
const LOG_TAIL_LINES = 5
/** How long a connection through the engine's port proxy must stay open to count as reaching the service. */
const PROXY_SETTLE_MS = 250

/**
 * Containers on a Docker engine, one per contract: `outpost-<contract>`, labelled with the contract, with the
 * contract's CPU and memory as limits and the service port published on a free host port (the engine picks it).
 *
 * Credentials: a random password goes into the container as the environment variable `password_env`, with the
 * renter's SSH key in `ssh_key_env`; the image's entrypoint sets the login from them (an sshd image runs
 * `echo "root:$OUTPOST_PASSWORD" | chpasswd`). Being in the container's config, the password is found again after an
 * agent restart. The contract's storage_gb is not enforced: a per-container disk quota needs overlay2 on XFS with
 * project quotas, which few hosts have.
 */
export class DockerProvisioner implements Provisioner {
  readonly type = 'docker'
  readonly engine: DockerEngine
  /** One provision at a time per contract, so two calls at once never create two containers. */
  private readonly provisions = new OneAtATime()

  constructor(private readonly settings: DockerSettings) {
    this.engine = new DockerEngine(settings.socket, settings.requestTimeoutMs)
  }

  async provision(contract: Contract, signal: AbortSignal, gpus: readonly GpuUnit[] = []): Promise<ProvisionedInstance> {
    const name = instanceName(contract.contract_id)
    if (gpus.length !== contract.gpu_count) {
      throw new ProvisionError(`contract ${contract.contract_id} asks for ${contract.gpu_count} GPUs and was allocated ${gpus.length}`, {retryPossible: true})
    }
    return provisionWithCleanup(this.provisions, name, signal, {
      attempt: () => this.provisionOnce(contract, name, signal, gpus),
      cleanUp: () => this.removeLeftover(contract.contract_id, name),
    })
  }

  async find(contractId: string, signal?: AbortSignal): Promise<ProvisionedInstance | undefined> {
    try {
      const [summary] = await this.listContainers({label: [`${CONTRACT_LABEL}=${contractId}`]}, signal)
      if (!summary) return undefined
      const container = await this.inspect(summary.Id, signal)
      if (container?.State.Status !== 'running' || this.hostPort(container) === undefined) return undefined
      return this.describe(container, contractId)
    } catch (error) {
      throw toProvisionError(error, `looking up the container of ${contractId}`)
    }
  }

  /**
   * Stop (the engine kills after stop_timeout_seconds), then remove with its volumes, and the contract's network after
   * its containers. Already gone is success.
   */
  async terminate(claim: InstanceClaim, signal?: AbortSignal): Promise<void> {
    const what = `terminating the container of ${claim.contractId}`
    try {
      for (const container of checkClaim(claim, await this.containersOf(claim.contractId, signal))) {
        const id = container.externalId
        await this.engine.call(`stopping container ${id}`, {method: 'POST', path: `/containers/${id}/stop`, query: {t: this.settings.stopTimeoutSeconds}, accept: [304, 404]}, signal)
        await this.remove(id, signal)
      }
      await this.removeNetworks(claim.contractId, signal)
    } catch (error) {
      throw toProvisionError(error, what)
    }
  }

  async health(claim: InstanceClaim, signal?: AbortSignal): Promise<InstanceHealth> {
    const inspected = async () => {
      const found = []
      for (const {externalId} of await this.containersOf(claim.contractId, signal)) {
        const container = await this.inspect(externalId, signal)
        if (container) found.push({externalId, container})
      }
      return found
    }
    return healthOfClaim('container', claim, inspected, ({container}) => this.judgeHealth(container))
  }

  private async judgeHealth(container: ContainerInspect): Promise<InstanceHealth> {
    const state = container.State
    if (state.Status !== 'running') return {status: 'unhealthy', details: {state: state.Status, exit_code: state.ExitCode}}
    const uptimeSeconds = Math.max(0, Math.floor((Date.now() - Date.parse(state.StartedAt)) / 1000))
    // An image with a HEALTHCHECK knows best; otherwise the published port must reach the service.
    if (state.Health?.Status === 'unhealthy') return {status: 'unhealthy', uptimeSeconds, details: {state: state.Status, healthcheck: 'unhealthy'}}
    const port = this.hostPort(container)
    if (port === undefined || !(await serviceAnswers(this.probeAddress(), port, 2000))) {
      return {status: 'unhealthy', uptimeSeconds, details: {state: state.Status, reason: `port ${port ?? '(unpublished)'} does not reach the service`}}
    }
    return {status: 'healthy', uptimeSeconds, details: {state: state.Status}}
  }

  async list(signal?: AbortSignal): Promise<ListedInstance[]> {
    try {
      const containers = await this.listContainers({label: [`${MANAGED_LABEL}=true`]}, signal)
      return containers.map((container) => {
        const contractId = container.Labels[CONTRACT_LABEL]
        const name = container.Names[0]?.replace(/^\//, '') ?? container.Id
        return {externalId: container.Id, name, ...(contractId ? {contractId} : {})}
      })
    } catch (error) {
      throw toProvisionError(error, 'listing containers')
    }
  }

  async capacity(signal?: AbortSignal): Promise<Capacity> {
    try {
      const info = await this.engine.json('reading engine info', EngineInfo, {method: 'GET', path: '/info'}, signal)
      if (!info) throw new DockerApiError('reading engine info: no answer')
      const gpus = await this.gpuUnits()
      return {
        cpuCores: info.NCPU,
        memoryMb: Math.floor(info.MemTotal / 1024 ** 2),
        storageGb: freeGb(info.DockerRootDir),
        gpuCount: gpus.length,
        gpuModels: [...new Set(gpus.map((unit) => unit.model))].sort(),
      }
    } catch (error) {
      throw toProvisionError(error, 'reading engine capacity')
    }
  }

  /** This host's GPUs (from nvidia-smi) that `[gpu]` lets containers have; none without a driver. */
  async gpuUnits(): Promise<GpuUnit[]> {
    return localGpuUnits(await readGpuInventory(this.settings.gpu.nvidia_smi), this.settings.gpu).units
  }

  async verifySetup(signal?: AbortSignal): Promise<SetupCheck[]> {
    const checks: SetupCheck[] = []
    try {
      const info = await this.engine.json('reading engine info', EngineInfo, {method: 'GET', path: '/info'}, signal)
      checks.push({name: 'docker engine', ok: true, message: `${this.settings.socket} answers (Docker ${info?.ServerVersion ?? 'unknown'})`})
    } catch (error) {
      checks.push({
        name: 'docker engine',
        ok: false,
        message: describeError(error),
        remedy: `start the Docker engine, or set [provisioner.docker] socket; the agent's user needs access to ${this.settings.socket}`,
      })
      return checks
    }
    const image = this.settings.image
    try {
      const found = await this.engine.json(`inspecting image ${image}`, ImageInspect, {method: 'GET', path: `/images/${encodeURIComponent(image)}/json`, accept: [404]}, signal)
      checks.push(
        found
          ? {name: 'docker image', ok: true, message: `${image} is present (${found.Id.slice(0, 19)})`}
          : {name: 'docker image', ok: false, message: `image ${image} is not on the engine`, remedy: `docker pull ${image} (or docker load it); outpost never pulls`},
      )
    } catch (error) {
      checks.push({name: 'docker image', ok: false, message: describeError(error)})
    }
    checks.push(...(await this.gpuChecks(signal)))
    return checks
  }

  /** With GPUs to hand out: which ones, and whether the engine can give them to containers. */
  private async gpuChecks(signal?: AbortSignal): Promise<SetupCheck[]> {
    const inventory = await readGpuInventory(this.settings.gpu.nvidia_smi)
    const {units, notes} = localGpuUnits(inventory, this.settings.gpu)
    if (inventory.state === 'none' && this.settings.gpu.devices === undefined) return []
    if (units.length === 0) {
      return [{name: 'docker gpus', ok: false, message: [describeInventory(inventory), ...notes].join('; '), remedy: 'install the NVIDIA driver, or fix [gpu] devices and mig'}]
    }
    const info = await this.engine.json('reading engine info', EngineInfo, {method: 'GET', path: '/info'}, signal)
    const runtime = checkContainerRuntime(Object.keys(info?.Runtimes ?? {}), findNvidiaHook())
    return [
      {name: 'docker gpus', ok: true, message: [`${units.length} handed out: ${units.map((unit) => `${unit.label} (${unit.model})`).join(', ')}`, ...notes].join('; ')},
      {name: 'docker gpu runtime', ok: runtime.ok, message: runtime.message, ...(runtime.remedy ? {remedy: runtime.remedy} : {})},
    ]
  }

  // --- provisioning steps ---

  private async provisionOnce(contract: Contract, name: string, signal: AbortSignal, gpus: readonly GpuUnit[]): Promise<ProvisionedInstance> {
    let container = await this.inspect(name, signal)
    if (container && container.Config.Labels[CONTRACT_LABEL] !== contract.contract_id) {
      throw new ProvisionError(`a container named ${name} exists that outpost did not make for this contract`, {retryPossible: false})
    }
    container ??= await this.create(contract, name, await this.network(contract.contract_id, name, signal), signal, gpus)
    if (!container.State.Running) {
      try {
        await this.engine.call(`starting container ${name}`, {method: 'POST', path: `/containers/${container.Id}/start`, accept: [304]}, signal)
      } catch (error) {
        if (error instanceof DockerApiError && /could not select device driver/.test(error.message)) {
          throw new ProvisionError(`${error.message}: the engine has no NVIDIA container runtime (${CONTAINER_RUNTIME_REMEDY})`, {retryPossible: false, cause: error})
        }
        throw error
      }
    }
    const ready = await this.waitReady(container.Id, name, signal)
    return this.describe(ready, contract.contract_id)
  }

  /**
   * The contract's own bridge network, made on first use: containers of two contracts share no network, so the
   * engine's isolation rules keep them apart (and the one bridge of a contract carries no other renter's traffic).
   * It is found by its labels; its name has a random suffix because the engine resolves a container's network by name
   * when it starts it, and a create cut short by an abort may still make a second network with the contract's name.
   */
  private async network(contractId: string, name: string, signal: AbortSignal): Promise<string> {
    const [existing] = await this.networksOf(contractId, signal)
    if (existing) return existing.Id
    const body = {
      Name: `${name}-${randomBytes(4).toString('hex')}`,
      Driver: 'bridge',
      Labels: instanceLabels(contractId),
      Options: {'com.docker.network.bridge.enable_icc': 'false'},
    }
    try {
      const created = await this.engine.json(`creating network ${body.Name}`, NetworkCreated, {method: 'POST', path: '/networks/create', body}, signal)
      if (!created) throw new DockerApiError(`creating network ${body.Name}: no answer`)
      return created.Id
    } catch (error) {
      if (error instanceof DockerApiError && /non-overlapping|address pool/i.test(error.message)) {
        throw new ProvisionError(`${error.message} (each contract has its own network: give the engine more address pools, see default-address-pools in daemon.json)`, {retryPossible: true, cause: error})
      }
      throw error
    }
  }

  private async create(contract: Contract, name: string, network: string, signal: AbortSignal, gpus: readonly GpuUnit[]): Promise<ContainerInspect> {
    const servicePort = `${this.settings.servicePort}/tcp`
    const body = {
      Image: this.settings.image,
      ...(this.settings.command ? {Cmd: this.settings.command} : {}),
      Env: [
        `${this.settings.passwordEnv}=${randomBytes(18).toString('base64url')}`,
        `${this.settings.sshKeyEnv}=${contract.ssh_pubkey.trim()}`,
        `OUTPOST_INSTANCE=${name}`,
        `OUTPOST_CONTRACT_ID=${contract.contract_id}`,
      ],
      Labels: instanceLabels(contract.contract_id),
      ExposedPorts: {[servicePort]: {}},
      HostConfig: {
        NanoCpus: contract.cpu_cores * 1e9,
        Memory: contract.memory_mb * 1024 * 1024,
        // An empty HostPort lets the engine take a free one, with no race against other programs.
        PortBindings: {[servicePort]: [{HostIp: this.settings.bindAddress, HostPort: ''}]},
        RestartPolicy: {Name: 'unless-stopped'},
        NetworkMode: network,
        CapDrop: ['ALL'],
        CapAdd: [...RENTER_CAPABILITIES],
        SecurityOpt: ['no-new-privileges:true'],
        PidsLimit: PIDS_LIMIT,
        // The allocated devices by UUID, as `docker run --gpus device=<uuid>` asks: never a count the engine picks from.
        ...(gpus.length > 0 ? {DeviceRequests: [{Driver: '', DeviceIDs: gpus.map((unit) => unit.id), Capabilities: [['gpu']]}]} : {}),
      },
    }
    try {
      await this.engine.json(`creating container ${name}`, ContainerCreated, {method: 'POST', path: '/containers/create', query: {name}, body}, signal)
    } catch (error) {
      if (error instanceof DockerApiError && error.status === 404) {
        throw new ProvisionError(`${error.message} (load the image onto the engine: outpost never pulls)`, {retryPossible: false, cause: error})
      }
      // 409: the name is taken, by this contract's container from an answer that was lost, or by someone else's.
      if (!(error instanceof DockerApiError && error.status === 409)) throw error
    }
    // A create cut short by an abort may still be under way in the engine: its name is reserved before it can be inspected.
    const container = await pollUntil(() => this.inspect(name, signal), {what: `container ${name} to appear`, timeoutMs: 10_000, signal, initialMs: 50})
    if (!container || container.Config.Labels[CONTRACT_LABEL] !== contract.contract_id) {
      throw new ProvisionError(`container name ${name} is taken by a container outpost did not make for this contract`, {retryPossible: false})
    }
    return container
  }

  /** Polls until the container runs and its published port reaches the service; an exit ends the wait with its log. */
  private async waitReady(id: string, name: string, signal: AbortSignal): Promise<ContainerInspect> {
    try {
      return await pollUntil(
        async () => {
          const container = await this.inspect(id, signal)
          if (!container) throw new ProvisionError(`container ${name} disappeared while starting`, {retryPossible: true})
          // With the restart policy a crashing workload shows as "restarting" (Running stays true) between attempts.
          if (['exited', 'dead', 'restarting'].includes(container.State.Status)) {
            const why = container.State.OOMKilled ? 'was killed for exceeding its memory limit' : `exited with code ${container.State.ExitCode}`
            throw new ProvisionError(`container ${name} ${why} before its service answered${await this.logTail(id)}`, {retryPossible: true})
          }
          if (container.State.Status !== 'running') return undefined
          const port = this.hostPort(container)
          return port !== undefined && (await serviceAnswers(this.probeAddress(), port, 1000)) ? container : undefined
        },
        {what: `the service of container ${name} answering on its published port`, timeoutMs: this.settings.startupTimeoutMs, signal, initialMs: 100},
      )
    } catch (error) {
      if (error instanceof PollTimeoutError) throw new ProvisionError(error.message, {retryPossible: true, cause: error})
      throw error
    }
  }

  /** Removes the container and the network a failed provision left, when outpost made them. */
  private async removeLeftover(contractId: string, name: string): Promise<void> {
    const leftover = await this.inspect(name)
    if (leftover && isManaged(leftover.Config.Labels)) await this.remove(leftover.Id)
    await this.removeNetworks(contractId)
  }

  /** Removes the contract's networks; its containers must be gone first (the engine refuses a network in use). */
  private async removeNetworks(contractId: string, signal?: AbortSignal): Promise<void> {
    for (const network of await this.networksOf(contractId, signal)) {
      await this.engine.call(`removing network ${network.Name}`, {method: 'DELETE', path: `/networks/${network.Id}`, accept: [404]}, signal)
    }
  }

  private async remove(id: string, signal?: AbortSignal): Promise<void> {
    const answer = await this.engine.call(`removing container ${id}`, {method: 'DELETE', path: `/containers/${id}`, query: {force: true, v: true}, accept: [404, 409]}, signal)
    if (answer.status !== 409) return
    // 409: a removal is already in progress (another call's); done when the container is gone.
    await pollUntil(async () => ((await this.inspect(id, signal)) ? undefined : true), {what: `removal of container ${id}`, timeoutMs: 30_000, signal})
  }

  // --- lookups ---

  private inspect(idOrName: string, signal?: AbortSignal): Promise<ContainerInspect | undefined> {
    return this.engine.json(`inspecting container ${idOrName}`, ContainerInspect, {method: 'GET', path: `/containers/${encodeURIComponent(idOrName)}/json`, accept: [404]}, signal)
  }

  /** The containers outpost made for the contract, by their labels. */
  private async containersOf(contractId: string, signal?: AbortSignal): Promise<{externalId: string}[]> {
    const containers = await this.listContainers({label: [`${CONTRACT_LABEL}=${contractId}`, `${MANAGED_LABEL}=true`]}, signal)
    return containers.map((container) => ({externalId: container.Id}))
  }

  /** The networks outpost made for the contract, by their labels. */
  private async networksOf(contractId: string, signal?: AbortSignal): Promise<NetworkSummary[]> {
    const filters = JSON.stringify({label: [`${CONTRACT_LABEL}=${contractId}`, `${MANAGED_LABEL}=true`]})
    return (await this.engine.json('listing networks', NetworkList, {method: 'GET', path: '/networks', query: {filters}}, signal)) ?? []
  }

  private async listContainers(filters: Record<string, string[]>, signal?: AbortSignal) {
    const list = await this.engine.json('listing containers', ContainerList, {method: 'GET', path: '/containers/json', query: {all: true, filters: JSON.stringify(filters)}}, signal)
    return list ?? []
  }

  private describe(container: ContainerInspect, contractId: string): ProvisionedInstance {
    const passwordEntry = container.Config.Env.find((entry) => entry.startsWith(`${this.settings.passwordEnv}=`))
    const password = passwordEntry?.slice(this.settings.passwordEnv.length + 1)
    const port = this.hostPort(container)
    if (port === undefined) throw new ProvisionError(`container ${displayName(container)} has no published port ${this.settings.servicePort}/tcp`, {retryPossible: true})
    return {
      externalId: container.Id,
      contractId,
      ipAddress: this.publicAddress(),
      sshPort: port,
      ...(password ? {credentials: {username: this.settings.username, password}} : {}),
      details: {provisioner: 'docker', container: displayName(container), image: this.settings.image, service_port: this.settings.servicePort},
    }
  }

  private hostPort(container: ContainerInspect): number | undefined {
    const bindings = container.NetworkSettings.Ports[`${this.settings.servicePort}/tcp`] ?? []
    const port = Number(bindings.find((binding) => binding.HostPort !== '')?.HostPort)
    return Number.isInteger(port) && port > 0 ? port : undefined
  }

  /** Where renters connect: configured, else the bind address when it is one, else this host's first public IPv4. */
  private publicAddress(): string {
    if (this.settings.publicAddress) return this.settings.publicAddress
    if (this.settings.bindAddress !== '0.0.0.0') return this.settings.bindAddress
    const external = Object.values(networkInterfaces())
      .flat()
      .find((entry) => entry?.family === 'IPv4' && !entry.internal)
    return external?.address ?? '127.0.0.1'
  }

  /** Where this host reaches the published port itself. */
  private probeAddress(): string {
    return this.settings.bindAddress === '0.0.0.0' ? '127.0.0.1' : this.settings.bindAddress
  }

  private async logTail(id: string): Promise<string> {
    try {
      const answer = await this.engine.call(`logs of container ${id}`, {method: 'GET', path: `/containers/${id}/logs`, query: {stdout: true, stderr: true, tail: LOG_TAIL_LINES}})
      const lines = demultiplexLogs(answer.body).trim()
      return lines ? `\n  container log:\n    ${lines.split('\n').join('\n    ')}` : ''
    } catch {
      return ''
    }
  }

}

function displayName(container: ContainerInspect): string {
  return container.Name.replace(/^\//, '')
}

function freeGb(path: string): number {
  try {
    const disk = statfsSync(path)
    return Math.floor((disk.bavail * disk.bsize) / 1024 ** 3)
  } catch {
    // The engine runs on another host (a forwarded socket): its disk can't be read from here.
    return 0
  }
}

/**
 * Whether a TCP connection reaches the service behind a published port. The engine's port proxy accepts every
 * connection and closes it at once when nothing listens in the container, so a connection counts when the service
 * speaks first (SSH, a banner) or it is still open after a moment (HTTP waits for the request).
 */
export function serviceAnswers(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({host, port})
    let settle: NodeJS.Timeout | undefined
    const done = (ok: boolean) => {
      clearTimeout(settle)
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => (settle = setTimeout(() => done(true), PROXY_SETTLE_MS)))
    socket.once('data', () => done(true))
    socket.once('close', () => done(false))
    socket.once('error', () => done(false))
  })
}
