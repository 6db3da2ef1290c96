import {join} from 'node:path'

import type {LoadedConfig} from '../core/config/load.js'
import {resolveFrom} from '../core/config/paths.js'
import {SlurmProvisionerSection} from '../core/config/schema.js'
import {ExitCode, UserError} from '../core/errors.js'
import {LocalProvisioner} from './local/local-provisioner.js'
import {ManualProvisioner} from './manual/manual-provisioner.js'
import type {Provisioner, ProvisionerLogger} from './provisioner.js'
import {ProxmoxProvisioner} from './proxmox/proxmox-provisioner.js'
import {ScriptProvisioner} from './script/script-provisioner.js'

/** The schema already requires the section of the chosen type; this keeps the compiler's narrowing honest. */
function missingSection(type: string): UserError {
  return new UserError(`[provisioner.${type}] is required when type = "${type}"`, {code: 'config_invalid', exit: ExitCode.config})
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
    provision: async (contract, signal) => (await backend()).provision(contract, signal),
    terminate: async (externalId, signal) => (await backend()).terminate(externalId, signal),
    health: async (externalId, signal) => (await backend()).health(externalId, signal),
    find: async (contractId, signal) => (await backend()).find(contractId, signal),
    list: async (signal) => (await backend()).list(signal),
    verifySetup: async (signal) => (await backend()).verifySetup(signal),
    capacity: async (signal) => (await backend()).capacity(signal),
    close: async () => {
      if (loading) await (await loading).close?.()
    },
  }
}

/** The backend named by `[provisioner] type`. The Proxmox backend loads proxmox-api on its first request only. */
export function createProvisioner(loaded: LoadedConfig, options: {logger?: ProvisionerLogger} = {}): Provisioner {
  const {provisioner} = loaded.config
  switch (provisioner.type) {
    case 'proxmox':
      if (provisioner.proxmox) {
        const largestDisk = Math.max(0, ...loaded.config.offerings.map((offering) => offering.storage_gb))
        return new ProxmoxProvisioner(provisioner.proxmox, largestDisk > 0 ? {minimumStorageGb: largestDisk} : {})
      }
      throw missingSection('proxmox')
    case 'script':
      if (provisioner.script) {
        return new ScriptProvisioner({
          command: resolveFrom(loaded.path, provisioner.script.command),
          provisionTimeoutMs: provisioner.script.provision_timeout_seconds * 1000,
          actionTimeoutMs: provisioner.script.action_timeout_seconds * 1000,
        })
      }
      throw missingSection('script')
    case 'manual':
      return new ManualProvisioner({
        stateDir: loaded.paths.stateDir,
        webhookUrl: provisioner.manual.webhook_url,
        pollIntervalMs: provisioner.manual.poll_interval_seconds * 1000,
        logger: options.logger,
      })
    case 'local':
      return new LocalProvisioner({
        stateDir: loaded.paths.stateDir,
        ...(provisioner.local.instances_dir ? {instancesDir: resolveFrom(loaded.path, provisioner.local.instances_dir)} : {}),
        command: provisioner.local.command,
        startupTimeoutMs: provisioner.local.startup_timeout_seconds * 1000,
      })
    case 'docker': {
      const section = provisioner.docker
      if (!section) throw missingSection('docker')
      return lazyProvisioner('docker', async () => new (await import('./docker/docker-provisioner.js')).DockerProvisioner(section))
    }
    case 'hetzner': {
      const section = provisioner.hetzner
      if (!section) throw missingSection('hetzner')
      const largestDisk = Math.max(0, ...loaded.config.offerings.map((offering) => offering.storage_gb))
      return lazyProvisioner('hetzner', async () => new (await import('./hetzner/hetzner-provisioner.js')).HetznerProvisioner(section, {minimumStorageGb: largestDisk}))
    }
    case 'slurm': {
      const section = provisioner.slurm ?? SlurmProvisionerSection.parse({})
      const template = section.template ? resolveFrom(loaded.path, section.template) : undefined
      const slurmConf = section.slurm_conf ? resolveFrom(loaded.path, section.slurm_conf) : undefined
      const workDir = join(loaded.paths.stateDir, 'slurm')
      return lazyProvisioner(
        'slurm',
        async () => new (await import('./slurm/slurm-provisioner.js')).SlurmProvisioner({...section, template, slurm_conf: slurmConf}, {workDir}),
      )
    }
    default:
      throw new UserError(`[provisioner] type = "${provisioner.type}" is not available in this build`, {
        code: 'provisioner_unavailable',
        exit: ExitCode.config,
        suggestion: 'use type = "local", or update outpost',
      })
  }
}
