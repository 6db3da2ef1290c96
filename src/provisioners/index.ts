import type {LoadedConfig} from '../core/config/load.js'
import {resolveFrom} from '../core/config/paths.js'
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
        command: provisioner.local.command,
        startupTimeoutMs: provisioner.local.startup_timeout_seconds * 1000,
      })
    default:
      throw new UserError(`[provisioner] type = "${provisioner.type}" is not available in this build`, {
        code: 'provisioner_unavailable',
        exit: ExitCode.config,
        suggestion: 'use type = "local", or update outpost',
      })
  }
}
