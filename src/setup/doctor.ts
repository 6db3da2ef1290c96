import {readFileSync, statSync} from 'node:fs'

import {isLoopbackHost} from '../core/api/endpoint.js'
import {ENV_KEYS} from '../core/config/env.js'
import {loadConfig, parseToml, type LoadedConfig} from '../core/config/load.js'
import {secretFields} from '../core/config/schema.js'
import {describeError, ExitCode, isUserError, type ExitCodeValue} from '../core/errors.js'
import {readKeyFile, readKeyFileContent, type StoredKey} from '../core/keys.js'
import {createProvisioner} from '../provisioners/index.js'
import type {Provisioner} from '../provisioners/provisioner.js'
import {attestationCheck} from './attestation-check.js'
import {gpuCheck} from './gpu-check.js'

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
  /** `--allow-insecure-http`: as [marketplace] allow_insecure_http for this run. */
  allowInsecureHttp?: boolean
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

/** The secrets a config file itself holds (not those set by OUTPOST_* variables), as `[section] key`. */
function secretsInFile(file: string): string[] {
  const raw = parseToml(readFileSync(file, 'utf8'), file)
  const valueAt = (path: readonly string[]) => path.reduce<unknown>((node, key) => (node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined), raw)
  return ENV_KEYS.filter((key) => secretFields.get(key.schema)?.secret && valueAt(key.path) !== undefined).map((key) => `[${key.path.slice(0, -1).join('.')}] ${key.path.at(-1) ?? ''}`)
}

/** The config file is fine when only its owner can read it, or when it holds no secret. */
function configCheck(file: string): CheckResult {
  const mode = statSync(file).mode & 0o777
  const secrets = (mode & 0o077) === 0 ? [] : secretsInFile(file)
  if (secrets.length === 0) return {name: 'config', status: 'pass', message: `${file} parses and validates`}
  return {
    name: 'config',
    status: 'fail',
    message: `${file} holds ${secrets.join(', ')} and has mode ${mode.toString(8).padStart(4, '0')}: other users can read it`,
    remedy: `run: chmod 600 ${file}`,
  }
}

/** What a config needs before anything can be rented: who the provider is, and what it sells. */
function sellingChecks(loaded: LoadedConfig): CheckResult[] {
  const {provider, offerings} = loaded.config
  const file = loaded.path
  return [
    provider
      ? {name: 'provider', status: 'pass', message: `${provider.name} <${provider.contact_email}>`}
      : {name: 'provider', status: 'warn', message: 'no [provider] section: `outpost register` has no name and contact email to publish', remedy: `add [provider] name and contact_email to ${file}, or run \`outpost init\` in a terminal`},
    offerings.length > 0
      ? {name: 'offerings', status: 'pass', message: `${offerings.length} to publish: ${offerings.map((offering) => offering.name).join(', ')}`}
      : {name: 'offerings', status: 'warn', message: 'no [[offerings]]: nothing can be rented', remedy: `add [[offerings]] to ${file} (or run \`outpost init --offerings all\`), then \`outpost register\``},
  ]
}

/**
 * An http:// endpoint off this host: every command refuses it unless plain HTTP is allowed, and when it is, signed
 * requests and what answers them (contracts, renters' keys) cross the network in clear. Nothing to say otherwise.
 */
function endpointCheck(loaded: LoadedConfig): CheckResult[] {
  const {endpoint, allow_insecure_http: allowed} = loaded.config.marketplace
  const url = new URL(endpoint)
  if (url.protocol !== 'http:' || isLoopbackHost(url.hostname)) return []
  const https = `set [marketplace] endpoint to the marketplace's https:// URL`
  if (allowed) {
    return [{name: 'endpoint', status: 'warn', message: `${url.origin} is plain HTTP off this host (allowed): signed requests and the marketplace's answers cross the network in clear`, remedy: https}]
  }
  return [
    {
      name: 'endpoint',
      status: 'fail',
      message: `${url.origin} is plain HTTP off this host: every command refuses to send it signed requests`,
      remedy: `${https}, or on a network you trust set [marketplace] allow_insecure_http = true (--allow-insecure-http, OUTPOST_ALLOW_INSECURE_HTTP)`,
    },
  ]
}

/** Runs the local checks in order; a check whose input failed is skipped, not failed twice. */
export async function runDoctor(options: DoctorOptions): Promise<DoctorReport> {
  const checks: CheckResult[] = []
  let loaded: LoadedConfig | undefined
  let configInvalid = false
  try {
    loaded = loadConfig(options.configFile)
    if (options.allowInsecureHttp) loaded.config.marketplace.allow_insecure_http = true
    checks.push(configCheck(options.configFile), ...endpointCheck(loaded), ...sellingChecks(loaded))
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
    if (loaded.config.attestation.enabled) checks.push(await attestationCheck(loaded))
    if (options.verifyApi) {
      if (agentKey) checks.push(...(await (await import('./verify-api.js')).verifyApi(loaded, agentKey)))
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
