import {copyFileSync, existsSync, readFileSync, statSync} from 'node:fs'
import {cpus, totalmem} from 'node:os'
import {dirname, join} from 'node:path'

import {loadConfig, parseToml, validateConfig, type LoadedConfig} from '../core/config/load.js'
import {setConfigText, writeConfigFile} from '../core/config/save.js'
import type {Offering, ProviderProfile} from '../core/config/schema.js'
import {ExitCode, UserError} from '../core/errors.js'
import {backupPath} from '../core/files.js'
import {fromHex} from '../core/hex.js'
import {describeKey, readKeyFileContent, writeKeyFile, type KeyType, type StoredKey} from '../core/keys.js'
import {generateKeyPair} from '../core/signing.js'
import {renderTemplate} from '../core/templates.js'
import {describeInventory, type GpuInventory} from '../gpu/inventory.js'
import type {Asker} from '../ui/asker.js'
import {missingAnswersError} from './answers.js'
import {checkEndpoint, checkInitAnswers, emailProblem, endpointProblem, INIT_ANSWERS, nameProblem, priceProblem, type InitAnswers} from './init-answers.js'
import {suggestedGpuOfferings} from './gpu-check.js'
import {backendCapacity, DEFAULT_PRICE_PER_CORE, describeOffering, hostCapacity, offeringsToml, sizeOfferings, type DetectedCapacity} from './offerings.js'

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:8787'
export const MAIN_KEY_FILE_NAME = 'provider-main.key'
export const AGENT_KEY_FILE_NAME = 'agent.key'

export interface InitOptions {
  configFile: string
  /** The answers given as flags or OUTPOST_* variables; init asks for the rest when a person can answer. */
  answers: InitAnswers
  mainKey: boolean
  force: boolean
  /** --encrypt (every key) or --no-encrypt (none); undefined: the main key is encrypted, the agent key is not. */
  encrypt?: boolean
  /** This host's GPUs (nvidia-smi): a new config suggests an offering per model, commented out. */
  gpus?: GpuInventory
}

export interface InitIo {
  /** Present only when a person can answer (a terminal, no CI, no --yes, no --json). */
  asker?: Asker
  /** The passphrase for new keys (asked twice in a terminal); undefined when there is no way to get one. */
  newPassphrase?: () => Promise<string>
}

interface KeyResult {
  file: string
  public_key: string
  fingerprint: string
  encrypted: boolean
  status: 'created' | 'kept'
  backup?: string
}

export interface InitResult {
  config_file: string
  config_status: 'created' | 'updated'
  config_backup?: string
  agent_key: KeyResult
  main_key?: KeyResult
  provider: {name: string; contact_email: string} | null
  offerings: Offering[]
  /** What the offerings were sized from; null when none were asked for, or the backend reports no capacity. */
  capacity: {source: string; cpu_cores: number; memory_mb: number; storage_gb: number; gpu_count: number} | null
  warnings: string[]
  next_steps: string[]
  /** The GPUs found and the offerings suggested for them (commented out in the config). */
  gpu?: {found: string; suggested_offerings: string[]}
}

/** --config naming a directory would be written over by a rename that fails half-way: refuse it first. */
function checkConfigPath(file: string): void {
  if (existsSync(file) && statSync(file).isDirectory()) {
    throw new UserError(`--config ${file} is a directory`, {code: 'invalid_flag', exit: ExitCode.usage, suggestion: `name the file, like --config ${join(file, 'outpost.toml')}`})
  }
  const dir = dirname(file)
  if (existsSync(dir) && !statSync(dir).isDirectory()) {
    throw new UserError(`${dir} is not a directory`, {code: 'invalid_flag', exit: ExitCode.usage, suggestion: 'choose another place for the config (--config or OUTPOST_CONFIG_DIR)'})
  }
}

/** The nearest folder that exists, for the free-space figure of a config dir not made yet. */
function existingAncestor(dir: string): string {
  let current = dir
  while (!existsSync(current) && dirname(current) !== current) current = dirname(current)
  return current
}

function capacityView(capacity: DetectedCapacity): NonNullable<InitResult['capacity']> {
  return {source: capacity.source, cpu_cores: capacity.cpuCores, memory_mb: capacity.memoryMb, storage_gb: capacity.storageGb, gpu_count: capacity.gpuCount}
}

/** The provider profile: both answers or neither (the config's [provider] needs both). */
async function askProfile(answers: InitAnswers, asker: Asker | undefined): Promise<ProviderProfile | undefined> {
  const validate = (problem: (value: string) => string | undefined) => (value: string) => problem(value) ?? true
  const name = answers.name ?? (asker ? await asker.input('Provider name (shown to renters)', {validate: validate(nameProblem)}) : undefined)
  const email = answers['contact-email'] ?? (asker ? await asker.input('Contact email (for the marketplace and renters)', {validate: validate(emailProblem)}) : undefined)
  if (name === undefined && email === undefined) return undefined
  if (name === undefined || email === undefined) {
    throw missingAnswersError(INIT_ANSWERS, [name === undefined ? {name: 'name', why: 'the provider name, with --contact-email'} : {name: 'contact-email', why: 'the contact email, with --name'}])
  }
  return {name: name.trim(), contact_email: email.trim(), regions: []}
}

/** Offerings sized from the capacity: the sizes named by --offerings, else chosen in a terminal, else none. */
async function chooseOfferings(capacity: DetectedCapacity | {unknown: string}, answers: InitAnswers, sizes: readonly string[] | undefined, asker: Asker | undefined): Promise<{offerings: Offering[]; notes: string[]}> {
  if (sizes?.length === 0 || (sizes === undefined && !asker)) return {offerings: [], notes: []}
  if ('unknown' in capacity) {
    if (sizes) throw new UserError(`--offerings: ${capacity.unknown}, so init can't size offerings`, {code: 'capacity_unknown', exit: ExitCode.usage, suggestion: 'leave out --offerings and add [[offerings]] to the config by hand'})
    return {offerings: [], notes: [`no offerings were sized: ${capacity.unknown}`]}
  }
  const price =
    answers['price-per-core'] ??
    (asker && sizes === undefined ? await asker.input('Price per vCPU per hour, in tokens', {default: DEFAULT_PRICE_PER_CORE, validate: (value) => priceProblem(value) ?? true}) : DEFAULT_PRICE_PER_CORE)
  const sized = sizeOfferings(capacity, price)
  if (sizes) return {offerings: sized.filter((offering) => sizes.includes(offering.name)), notes: []}
  const shown = sized.map(describeOffering)
  const question = `Offerings to sell (sized from ${capacity.source}: ${capacity.cpuCores} vCPU, ${capacity.memoryMb} MiB, ${capacity.storageGb} GiB free)`
  const chosen = asker ? await asker.checkbox(question, shown, shown) : shown
  return {offerings: sized.filter((_, index) => chosen.includes(shown[index] ?? '')), notes: []}
}

function providerToml(profile: ProviderProfile | undefined): string {
  if (!profile) {
    return [
      '# Who you are, published by `outpost register` (it needs both):',
      '# [provider]',
      '# name = "Acme Compute"',
      '# contact_email = "ops@acme.example"',
    ].join('\n')
  }
  return ['# Who you are, published by `outpost register`.', '[provider]', `name = ${JSON.stringify(profile.name)}`, `contact_email = ${JSON.stringify(profile.contact_email)}`].join('\n')
}

const OFFERINGS_EXAMPLE = [
  '# What you sell: `outpost register` publishes these; without one nothing can be rented.',
  '# [[offerings]]',
  '# name = "small-vm"',
  '# product_type = "compute"',
  '# cpu_cores = 2',
  '# memory_mb = 4096',
  '# storage_gb = 40',
  '# price_per_hour = "0.05"',
].join('\n')

function offeringsSection(offerings: readonly Offering[]): string {
  return offerings.length === 0 ? OFFERINGS_EXAMPLE : `# What you sell: \`outpost register\` publishes these.\n${offeringsToml(offerings)}`
}

/** The steps after init, each a command that works as printed. */
function nextSteps(result: Omit<InitResult, 'next_steps'>): string[] {
  const config = result.config_file
  const steps: string[] = []
  if (!result.provider) steps.push(`Say who you are: add [provider] name and contact_email to ${config} (or run \`outpost init\` in a terminal, which asks)`)
  if (result.offerings.length === 0) steps.push(`Say what you sell: add [[offerings]] to ${config}; without one nothing can be rented`)
  const gpuOfferings = result.gpu?.suggested_offerings ?? []
  if (gpuOfferings.length > 0) steps.push(`This host has GPUs: the config suggests ${gpuOfferings.join(', ')} (commented out); price and uncomment them`)
  const mainKey = result.main_key?.file
  steps.push(`Register and delegate the agent key: outpost register --config ${config} --main-key-file ${mainKey ?? '<your main key>'}`)
  if (mainKey) steps.push(`Then move ${mainKey} off this host: it controls your stake and offerings`)
  steps.push(`Check everything: outpost doctor --config ${config} --verify-api`)
  return steps
}

function noPassphrase(options: InitOptions): UserError {
  const byDefault = options.encrypt === undefined
  return new UserError(`${byDefault ? 'the provider main key is encrypted by default' : 'the keys are to be encrypted'}, and there is no passphrase and no terminal to ask for one`, {
    code: 'passphrase_required',
    exit: ExitCode.usage,
    suggestion: `pass --passphrase-file FILE or set OUTPOST_KEY_PASSPHRASE${byDefault ? ' (or --no-encrypt to keep the main key in plain text)' : ''}`,
  })
}

function writeNewKey(file: string, key: StoredKey, passphrase: string | undefined, force: boolean): KeyResult {
  let backup: string | undefined
  if (existsSync(file) && force) {
    backup = backupPath(file)
    copyFileSync(file, backup)
  }
  writeKeyFile(file, key, passphrase)
  return {file, ...describeKey(key.publicKey), encrypted: passphrase !== undefined, status: 'created', ...(backup ? {backup} : {})}
}

function newKey(type: KeyType): StoredKey {
  return {...generateKeyPair(), type}
}

/**
 * `outpost init`: the agent key (and a provider main key, encrypted unless --no-encrypt) and a config that loads, with
 * [provider] and [[offerings]] sized from this host's capacity when they are given or asked. Every answer is checked,
 * and the config rendered and validated, before any file is written. On an existing config (without --force) it adds
 * only what that config lacks: [provider], and offerings sized from the configured backend's capacity.
 */
export async function initProvider(options: InitOptions, io: InitIo): Promise<InitResult> {
  const checked = checkInitAnswers(options.answers)
  checkConfigPath(options.configFile)
  if (existsSync(options.configFile) && !options.force) return completeConfig(options, io, checked)

  const dir = dirname(options.configFile)
  const agentFile = join(dir, AGENT_KEY_FILE_NAME)
  const mainFile = join(dir, MAIN_KEY_FILE_NAME)
  const existing = [options.configFile, agentFile, ...(options.mainKey ? [mainFile] : [])].filter((path) => existsSync(path))
  if (existing.length > 0 && !options.force) {
    throw new UserError(`already initialised: ${existing.join(', ')} exist`, {
      code: 'already_initialised',
      suggestion: 'keep them, or pass --force to replace them (old files are kept as timestamped backups)',
    })
  }
  const encryptMain = options.mainKey && options.encrypt !== false
  const encryptAgent = options.encrypt === true
  const askPassphrase = encryptMain || encryptAgent ? io.newPassphrase : undefined
  if ((encryptMain || encryptAgent) && !askPassphrase) throw noPassphrase(options)

  const endpoint = checked.endpoint ?? (io.asker ? checkEndpoint(await io.asker.input('Marketplace API URL', {default: DEFAULT_ENDPOINT, validate: (value) => endpointProblem(value) ?? true})) : DEFAULT_ENDPOINT)
  const profile = await askProfile(options.answers, io.asker)
  const capacity = hostCapacity(existingAncestor(dir))
  const {offerings} = await chooseOfferings(capacity, options.answers, checked.sizes, io.asker)
  const passphrase = askPassphrase ? await askPassphrase() : undefined

  const main = options.mainKey ? newKey('provider-main') : undefined
  const agent = newKey('agent')
  const suggested = options.gpus ? suggestedGpuOfferings(options.gpus, {models: {}}, {cpuCores: cpus().length, memoryMb: Math.floor(totalmem() / 1024 ** 2)}) : {toml: '', names: []}
  const text = renderTemplate('outpost.toml', {
    endpoint: JSON.stringify(endpoint),
    provider_pubkey_line: main ? `provider_pubkey = "${describeKey(main.publicKey).public_key}"` : '# provider_pubkey is set by `outpost register`',
    provider_section: providerToml(profile),
    offerings_section: offeringsSection(offerings),
    gpu_offerings: suggested.toml ? `\n# GPU offerings for this host's GPUs, from nvidia-smi:\n${suggested.toml}\n` : '',
  })
  // The written file must load: validated before any key or config is written.
  validateConfig(parseToml(text, options.configFile), options.configFile, {}, text)

  const mainKey = main ? writeNewKey(mainFile, main, encryptMain ? passphrase : undefined, options.force) : undefined
  const agentKey = writeNewKey(agentFile, agent, encryptAgent ? passphrase : undefined, options.force)
  const {backup} = writeConfigFile(options.configFile, text)
  const warnings = main && !encryptMain ? [`${mainFile} holds the provider main key in plain text (--no-encrypt): anyone who reads it can move your stake`] : []
  const result: Omit<InitResult, 'next_steps'> = {
    config_file: options.configFile,
    config_status: backup ? 'updated' : 'created',
    ...(backup ? {config_backup: backup} : {}),
    agent_key: agentKey,
    ...(mainKey ? {main_key: mainKey} : {}),
    provider: providerView(profile),
    offerings,
    capacity: offerings.length > 0 ? capacityView(capacity) : null,
    warnings,
    ...(options.gpus ? {gpu: {found: describeInventory(options.gpus), suggested_offerings: suggested.names}} : {}),
  }
  return {...result, next_steps: nextSteps(result)}
}

/** init on a config that exists: adds [provider] and [[offerings]] when it lacks them; keys are never replaced. */
async function completeConfig(options: InitOptions, io: InitIo, checked: ReturnType<typeof checkInitAnswers>): Promise<InitResult> {
  const alreadyInitialised = (why: string) =>
    new UserError(`already initialised: ${options.configFile} exists${why}`, {
      code: 'already_initialised',
      suggestion: 'keep it, or pass --force to start over (old files are kept as timestamped backups)',
    })
  if (options.mainKey || options.encrypt !== undefined) throw alreadyInitialised('; init only adds [provider] and [[offerings]] to an existing config, and makes no keys for it')
  const loaded = loadConfig(options.configFile, {})
  const {config} = loaded
  if (checked.sizes && checked.sizes.length > 0 && config.offerings.length > 0) {
    throw new UserError(`--offerings: ${options.configFile} has offerings already`, {code: 'offerings_exist', exit: ExitCode.usage, suggestion: 'edit the [[offerings]] in the file, then run `outpost register`'})
  }
  const profile = config.provider ? undefined : await askProfile(options.answers, io.asker)
  const sizesWanted = config.offerings.length === 0 && (checked.sizes === undefined ? io.asker !== undefined : checked.sizes.length > 0)
  const capacity = sizesWanted ? await backendCapacity(loaded) : undefined
  const {offerings, notes} = capacity ? await chooseOfferings(capacity, options.answers, checked.sizes, io.asker) : {offerings: [], notes: []}
  const endpoint = checked.endpoint !== undefined && checked.endpoint !== config.marketplace.endpoint ? checked.endpoint : undefined
  if (!profile && offerings.length === 0 && !endpoint) {
    throw alreadyInitialised(config.provider && config.offerings.length > 0 ? '' : `, and nothing was given to add to it${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`)
  }

  let text = readFileSync(options.configFile, 'utf8')
  if (endpoint) text = setConfigText(text, 'marketplace', {endpoint})
  if (profile) text = setConfigText(text, 'provider', {name: profile.name, contact_email: profile.contact_email})
  if (offerings.length > 0) text = `${text.trimEnd()}\n\n${offeringsSection(offerings)}\n`
  const {backup} = writeConfigFile(options.configFile, text)
  const result: Omit<InitResult, 'next_steps'> = {
    config_file: options.configFile,
    config_status: 'updated',
    ...(backup ? {config_backup: backup} : {}),
    agent_key: agentKeyOf(loaded),
    provider: providerView(profile ?? config.provider),
    offerings: offerings.length > 0 ? offerings : config.offerings,
    capacity: capacity && !('unknown' in capacity) && offerings.length > 0 ? capacityView(capacity) : null,
    warnings: notes,
  }
  return {...result, next_steps: nextSteps(result)}
}

function providerView(profile: ProviderProfile | undefined): InitResult['provider'] {
  return profile ? {name: profile.name, contact_email: profile.contact_email} : null
}

/** The config's agent key, made (unencrypted, as `outpost run` opens it unattended) when the config names none yet. */
function agentKeyOf(loaded: LoadedConfig): KeyResult {
  const file = loaded.paths.keyFile
  if (!existsSync(file)) return writeNewKey(file, newKey('agent'), undefined, false)
  const content = readKeyFileContent(file)
  return {file, ...describeKey(fromHex(content.public_key, 32, 'public_key')), encrypted: 'encrypted' in content, status: 'kept'}
}
