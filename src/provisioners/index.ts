import type {LoadedConfig} from '../core/config/load.js'
import {ExitCode, UserError} from '../core/errors.js'
import {LocalProvisioner} from './local/local-provisioner.js'
import type {Provisioner} from './provisioner.js'

/** The backend named by `[provisioner] type`. */
export function createProvisioner(loaded: LoadedConfig): Provisioner {
  const {provisioner} = loaded.config
  switch (provisioner.type) {
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
