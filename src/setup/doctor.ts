import {loadConfig, type LoadedConfig} from '../core/config/load.js'
import {describeError, ExitCode, isUserError, type ExitCodeValue} from '../core/errors.js'
import {readKeyFile, readKeyFileContent, type StoredKey} from '../core/keys.js'
import {createProvisioner} from '../provisioners/index.js'
import type {Provisioner} from '../provisioners/provisioner.js'
import {gpuCheck} from './gpu-check.js'
import {verifyApi} from './verify-api.js'

const PROVISIONER_CHECK_TIMEOUT_MS = 30_000

export type CheckStatus = 'pass' | 'fail' | 'warn' | 'skip'

export interface CheckResult {
  name: string
  status: CheckStatus
  message: string
  remedy?: string
}

export interface DoctorOptions {
  configFile: string
  /** Supplies the passphrase of an encrypted key, or undefined when none can be had without asking. */
  passphrase?: () => Promise<string>
  /** Also make a signed request to the marketplace (`--verify-api`). */
  verifyApi?: boolean
}

export interface DoctorReport {
  checks: CheckResult[]
  ok: boolean
  /** 0; 3 when the config is missing or invalid (nothing else could be checked); 6 when another check failed. */
  exit: ExitCodeValue
  loaded?: LoadedConfig
}

function failure(name: string, error: unknown): CheckResult {
  return {name, status: 'fail', message: describeError(error), remedy: isUserError(error) ? error.suggestion : undefined}
}

/**
 * The backend's own checks (for Proxmox: reachable, token valid, template exists, storage has room), as one line: all
 * of them when they pass, the failing ones with the first remedy when not.
 */
async function provisionerCheck(loaded: LoadedConfig): Promise<CheckResult> {
  const type = loaded.config.provisioner.type
  let provisioner: Provisioner | undefined
  try {
    provisioner = createProvisioner(loaded)
    const checks = await provisioner.verifySetup(AbortSignal.timeout(PROVISIONER_CHECK_TIMEOUT_MS))
    const failed = checks.filter((check) => !check.ok)
    if (failed.length === 0) {
      return {name: 'provisioner', status: 'pass', message: [`[provisioner] type = "${type}"`, ...checks.map((check) => check.message)].join('; ')}
    }
    const remedy = failed.find((check) => check.remedy)?.remedy
    return {name: 'provisioner', status: 'fail', message: `${type}: ${failed.map((check) => `${check.name}: ${check.message}`).join('; ')}`, ...(remedy ? {remedy} : {})}
  } catch (error) {
    return failure('provisioner', error)
  } finally {
    await provisioner?.close?.()
  }
}

/** Runs the local checks in order; a check whose input failed is skipped, not failed twice. */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const checks: CheckResult[] = []
  let loaded: LoadedConfig | undefined
  let configInvalid = false
  try {
    loaded = loadConfig(options.configFile)
    checks.push({name: 'config', status: 'pass', message: `${options.configFile} parses and validates`})
  } catch (error) {
    checks.push(failure('config', error))
    configInvalid = isUserError(error) && error.exit === ExitCode.config
  }

  if (loaded) {
    const keyFile = loaded.paths.keyFile
    let agentKey: StoredKey | undefined
    try {
      const content = readKeyFileContent(keyFile)
      if ('encrypted' in content && !options.passphrase) {
        checks.push({
          name: 'agent key',
          status: 'warn',
          message: `${keyFile} is encrypted and was not opened (no passphrase given)`,
          remedy: 'set OUTPOST_KEY_PASSPHRASE or pass --passphrase-file to check that it opens',
        })
      } else {
        agentKey = await readKeyFile(keyFile, {passphrase: options.passphrase})
        checks.push({name: 'agent key', status: 'pass', message: `${keyFile} has mode 0600 and opens`})
      }
    } catch (error) {
      checks.push(failure('agent key', error))
    }
    checks.push(await provisionerCheck(loaded))
    checks.push(await gpuCheck(loaded))
    if (options.verifyApi) {
      if (agentKey) checks.push(...(await verifyApi(loaded, agentKey)))
      else checks.push({name: 'api', status: 'skip', message: 'skipped: the agent key did not open'})
    }
  } else {
    checks.push({name: 'agent key', status: 'skip', message: 'skipped: the config did not load'})
    checks.push({name: 'provisioner', status: 'skip', message: 'skipped: the config did not load'})
    checks.push({name: 'gpu', status: 'skip', message: 'skipped: the config did not load'})
  }

  const ok = checks.every((check) => check.status === 'pass' || check.status === 'warn')
  return {checks, ok, exit: ok ? ExitCode.ok : configInvalid ? ExitCode.config : ExitCode.checksFailed, loaded}
}
