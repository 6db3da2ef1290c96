import {copyFileSync, existsSync} from 'node:fs'
import {cpus, totalmem} from 'node:os'
import {join} from 'node:path'

import {CONFIG_FILE_NAME} from '../core/config/paths.js'
import {validateConfig, parseToml} from '../core/config/load.js'
import {ExitCode, UserError} from '../core/errors.js'
import {backupPath, writeFileAtomic} from '../core/files.js'
import {createKeyFile, describeKey} from '../core/keys.js'
import {renderTemplate} from '../core/templates.js'
import {describeInventory, type GpuInventory} from '../gpu/inventory.js'
import {suggestedGpuOfferings} from './gpu-check.js'

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:8787'
export const MAIN_KEY_FILE_NAME = 'provider-main.key'
export const AGENT_KEY_FILE_NAME = 'agent.key'

export interface InitOptions {
  configDir: string
  configFile?: string
  endpoint: string
  mainKey: boolean
  force: boolean
  passphrase?: string
  /** This host's GPUs (nvidia-smi), for the GPU offerings the config suggests. */
  gpus?: GpuInventory
}

export interface InitResult {
  config_file: string
  config_backup?: string
  agent_key: {file: string; public_key: string; fingerprint: string; backup?: string}
  main_key?: {file: string; public_key: string; fingerprint: string; backup?: string}
  next_steps: string[]
  /** What nvidia-smi reported, and the GPU offerings suggested (commented) in the config. */
  gpu?: {found: string; suggested_offerings: string[]}
}

/** Creates the agent key (and optionally the provider main key) and a config that passes `outpost doctor`. */
export function initProvider(options: InitOptions): InitResult {
  const configFile = options.configFile ?? join(options.configDir, CONFIG_FILE_NAME)
  const agentKeyFile = join(options.configDir, AGENT_KEY_FILE_NAME)
  const mainKeyFile = join(options.configDir, MAIN_KEY_FILE_NAME)
  const existing = [configFile, agentKeyFile, ...(options.mainKey ? [mainKeyFile] : [])].filter((path) => existsSync(path))
  if (existing.length > 0 && !options.force) {
    throw new UserError(`already initialised: ${existing.join(', ')} exist`, {
      code: 'already_initialised',
      exit: ExitCode.failed,
      suggestion: 'keep them, or pass --force to replace them (old files are kept as timestamped backups)',
    })
  }

  const main = options.mainKey ? createKeyFile(mainKeyFile, 'provider-main', {passphrase: options.passphrase, force: options.force}) : undefined
  const agent = createKeyFile(agentKeyFile, 'agent', {passphrase: options.passphrase, force: options.force})

  const providerLine = main ? `provider_pubkey = "${describeKey(main.key.publicKey).public_key}"` : '# provider_pubkey is set by `outpost register`'
  const suggested = options.gpus ? suggestedGpuOfferings(options.gpus, {models: {}}, {cpuCores: cpus().length, memoryMb: Math.floor(totalmem() / 1024 ** 2)}) : {toml: '', names: []}
  const text = renderTemplate('outpost.toml', {
    endpoint: options.endpoint,
    provider_pubkey_line: providerLine,
    gpu_offerings: suggested.toml ? `\n# GPU offerings for this host's GPUs, from nvidia-smi:\n${suggested.toml}\n` : '',
  })
  // The written file must load: validate before it replaces anything.
  validateConfig(parseToml(text, configFile), configFile, {})
  let configBackup: string | undefined
  if (existsSync(configFile)) {
    configBackup = backupPath(configFile)
    copyFileSync(configFile, configBackup)
  }
  writeFileAtomic(configFile, text, 0o644)

  const nextSteps = main
    ? [
        `Move ${mainKeyFile} off this host once registered: it controls stake and offerings.`,
        'Add your [[offerings]] to the config, then run `outpost register --main-key-file ' + mainKeyFile + '`.',
      ]
    : ['Add your [[offerings]] to the config, then run `outpost register --main-key-file <your main key>`.']
  if (suggested.names.length > 0) nextSteps.push(`This host has GPUs: the config suggests ${suggested.names.join(', ')} (commented out); price and uncomment them.`)
  nextSteps.push('Check everything with `outpost doctor`.')

  return {
    config_file: configFile,
    ...(configBackup ? {config_backup: configBackup} : {}),
    agent_key: {file: agentKeyFile, ...describeKey(agent.key.publicKey), ...(agent.backup ? {backup: agent.backup} : {})},
    ...(main ? {main_key: {file: mainKeyFile, ...describeKey(main.key.publicKey), ...(main.backup ? {backup: main.backup} : {})}} : {}),
    next_steps: nextSteps,
    ...(options.gpus ? {gpu: {found: describeInventory(options.gpus), suggested_offerings: suggested.names}} : {}),
  }
}
