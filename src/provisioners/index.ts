import type {z} from 'zod'

import type {LoadedConfig} from '../core/config/load.js'
import {resolveFrom} from '../core/config/paths.js'
import {
  DockerProvisionerSection,
  HetznerProvisionerSection,
  LocalProvisionerSection,
  ManualProvisionerSection,
  ProxmoxProvisionerSection,
  ScriptProvisionerSection,
  SlurmProvisionerSection,
  type GpuConfig,
  type ProvisionerSection,
} from '../core/config/schema.js'
import {ExitCode, UserError} from '../core/errors.js'
import type {DockerSettings} from './docker/docker-provisioner.js'
import type {HetznerSettings} from './hetzner/hetzner-provisioner.js'
import type {LocalProvisionerOptions} from './local/local-provisioner.js'
import type {ManualProvisionerOptions} from './manual/manual-provisioner.js'
import type {Provisioner, ProvisionerLogger} from './provisioner.js'
import type {ProxmoxSettings} from './proxmox/proxmox-provisioner.js'
import type {ScriptProvisionerOptions} from './script/script-provisioner.js'
import type {SlurmSettings} from './slurm/slurm-provisioner.js'

type ProvisionerConfig = z.output<typeof ProvisionerSection>
export type BackendType = ProvisionerConfig['type']

/** Each backend's `[provisioner.<type>]` section, as the config schema gives it. */
type Sections = {[T in BackendType]-?: NonNullable<ProvisionerConfig[T]>}

/** Each backend's settings, as its constructor takes them: camelCase, times in milliseconds, paths absolute. */
interface Settings {
  local: LocalProvisionerOptions
  proxmox: ProxmoxSettings
  script: ScriptProvisionerOptions
  manual: ManualProvisionerOptions
  docker: DockerSettings
  hetzner: HetznerSettings
  slurm: SlurmSettings
}

/** What a backend may take from the config besides its own section. */
export interface BackendContext {
  /** The config file: relative paths in a section are relative to its folder. */
  configPath: string
  /** The agent's state dir, absolute. */
  stateDir: string
  /** The largest offering's disk in GB (0 without offerings): doctor checks that the backend has room for it. */
  largestOfferingDiskGb: number
  /** Where a backend that talks to the operator (manual) writes. */
  logger?: ProvisionerLogger
  /** `[gpu]`: the devices the backends that hand out GPUs (docker, proxmox) may give, and their published names. */
  gpu: GpuConfig
}

export interface Backend<Section, BackendSettings> {
  /** The section's schema: a section left out of the config is its defaults, or an error when a key has none. */
  section: z.ZodType<Section>
  /** The backend's settings from its section: the one place where config names and units become the backend's. */
  fromConfig(section: Section, context: BackendContext): BackendSettings
  /** The backend's class, from its module, imported on first use. */
  load(): Promise<new (settings: BackendSettings) => Provisioner>
}

const seconds = (value: number) => value * 1000

/** Every backend, by its `[provisioner] type`. A new backend is a folder beside these and one entry here. */
export const backends: {[T in BackendType]: Backend<Sections[T], Settings[T]>} = {
  local: {
    section: LocalProvisionerSection,
    fromConfig: (section, context) => ({
      stateDir: context.stateDir,
      ...(section.instances_dir ? {instancesDir: resolveFrom(context.configPath, section.instances_dir)} : {}),
      command: section.command,
      startupTimeoutMs: seconds(section.startup_timeout_seconds),
    }),
    load: async () => (await import('./local/local-provisioner.js')).LocalProvisioner,
  },
  manual: {
    section: ManualProvisionerSection,
    fromConfig: (section, context) => ({
      stateDir: context.stateDir,
      webhookUrl: section.webhook_url,
      pollIntervalMs: seconds(section.poll_interval_seconds),
      logger: context.logger,
    }),
    load: async () => (await import('./manual/manual-provisioner.js')).ManualProvisioner,
  },
  script: {
    section: ScriptProvisionerSection,
    fromConfig: (section, context) => ({
      command: resolveFrom(context.configPath, section.command),
      provisionTimeoutMs: seconds(section.provision_timeout_seconds),
      actionTimeoutMs: seconds(section.action_timeout_seconds),
    }),
    load: async () => (await import('./script/script-provisioner.js')).ScriptProvisioner,
  },
  proxmox: {
    section: ProxmoxProvisionerSection,
    fromConfig: (section, context) => ({
      host: section.host,
      port: section.port,
      tokenId: section.token_id,
      tokenSecret: section.token_secret,
      tlsFingerprint: section.tls_fingerprint,
      node: section.node,
      templateVmid: section.template_vmid,
      clone: section.clone,
      storage: section.storage,
      pool: section.pool,
      disk: section.disk,
      ciuser: section.ciuser,
      sshPort: section.ssh_port,
      ipPool: section.ip_pool,
      taskTimeoutMs: seconds(section.task_timeout_seconds),
      addressTimeoutMs: seconds(section.address_timeout_seconds),
      shutdownTimeoutSeconds: section.shutdown_timeout_seconds,
      requestTimeoutMs: seconds(section.request_timeout_seconds),
      keepFailed: section.keep_failed,
      passthrough: context.gpu.passthrough,
      // Without offerings the backend asks for its own default.
      minimumStorageGb: context.largestOfferingDiskGb > 0 ? context.largestOfferingDiskGb : undefined,
    }),
    load: async () => (await import('./proxmox/proxmox-provisioner.js')).ProxmoxProvisioner,
  },
  docker: {
    section: DockerProvisionerSection,
    fromConfig: (section, context) => ({
      socket: section.socket,
      image: section.image,
      command: section.command,
      servicePort: section.service_port,
      bindAddress: section.bind_address,
      publicAddress: section.public_address,
      username: section.username,
      passwordEnv: section.password_env,
      sshKeyEnv: section.ssh_key_env,
      startupTimeoutMs: seconds(section.startup_timeout_seconds),
      stopTimeoutSeconds: section.stop_timeout_seconds,
      requestTimeoutMs: seconds(section.request_timeout_seconds),
      gpu: context.gpu,
    }),
    load: async () => (await import('./docker/docker-provisioner.js')).DockerProvisioner,
  },
  hetzner: {
    section: HetznerProvisionerSection,
    fromConfig: (section, context) => ({
      token: section.token,
      apiUrl: section.api_url,
      image: section.image,
      region: section.region,
      architecture: section.architecture,
      serverTypes: section.server_types,
      sshPort: section.ssh_port,
      actionTimeoutMs: seconds(section.action_timeout_seconds),
      requestTimeoutMs: seconds(section.request_timeout_seconds),
      minimumStorageGb: context.largestOfferingDiskGb,
    }),
    load: async () => (await import('./hetzner/hetzner-provisioner.js')).HetznerProvisioner,
  },
  slurm: {
    section: SlurmProvisionerSection,
    fromConfig: (section, context) => ({
      runAs: section.run_as,
      partition: section.partition,
      account: section.account,
      nodes: section.nodes,
      tasks: section.tasks,
      timeLimit: section.time_limit,
      gpuType: section.gpu_type,
      template: section.template === undefined ? undefined : resolveFrom(context.configPath, section.template),
      slurmConf: section.slurm_conf === undefined ? undefined : resolveFrom(context.configPath, section.slurm_conf),
      sshPort: section.ssh_port,
      startTimeoutMs: seconds(section.start_timeout_seconds),
      commandTimeoutMs: seconds(section.command_timeout_seconds),
    }),
    load: async () => (await import('./slurm/slurm-provisioner.js')).SlurmProvisioner,
  },
}

/**
 * A backend whose module is imported on its first call, so a command that builds a provisioner without using it
 * (or never builds one) doesn't load the backend's code.
 */
function lazyProvisioner(type: string, load: () => Promise<Provisioner>): Provisioner {
  let loading: Promise<Provisioner> | undefined
  const backend = () => (loading ??= load())
  return {
    type,
    provision: async (contract, signal, gpus) => (await backend()).provision(contract, signal, gpus),
    terminate: async (claim, signal) => (await backend()).terminate(claim, signal),
    health: async (claim, signal) => (await backend()).health(claim, signal),
    find: async (contractId, signal) => (await backend()).find(contractId, signal),
    list: async (signal) => (await backend()).list(signal),
    verifySetup: async (signal) => (await backend()).verifySetup(signal),
    capacity: async (signal) => (await backend()).capacity(signal),
    gpuUnits: async (signal) => (await backend()).gpuUnits?.(signal),
    close: async () => {
      if (loading) await (await loading).close?.()
    },
  }
}

/** The backend `type` with its settings read from the config now; its module is loaded on its first call. */
function openBackend<T extends BackendType>(type: T, section: Sections[T] | undefined, context: BackendContext): Provisioner {
  const backend = backends[type]
  const filled = section ?? backend.section.safeParse({}).data
  if (filled === undefined) {
    throw new UserError(`[provisioner.${type}] is required when type = "${type}"`, {code: 'config_invalid', exit: ExitCode.config})
  }
  const settings = backend.fromConfig(filled, context)
  return lazyProvisioner(type, async () => new (await backend.load())(settings))
}

/** The backend named by `[provisioner] type`. */
export function createProvisioner(loaded: LoadedConfig, options: {logger?: ProvisionerLogger} = {}): Provisioner {
  const {provisioner, offerings} = loaded.config
  return openBackend(provisioner.type, provisioner[provisioner.type], {
    configPath: loaded.path,
    stateDir: loaded.paths.stateDir,
    largestOfferingDiskGb: Math.max(0, ...offerings.map((offering) => offering.storage_gb)),
    logger: options.logger,
    gpu: loaded.config.gpu,
  })
}
