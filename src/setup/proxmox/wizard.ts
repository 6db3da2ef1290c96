import {existsSync} from 'node:fs'
import {hostname} from 'node:os'
import {dirname, join} from 'node:path'

import {loadConfig} from '../../core/config/load.js'
import {resolveFrom} from '../../core/config/paths.js'
import type {OutpostConfig} from '../../core/config/schema.js'
import {AGENT_PERMISSIONS} from '../../core/delegation.js'
import {ExitCode, UserError} from '../../core/errors.js'
import {fromHex, toHex} from '../../core/hex.js'
import {createKeyFile, readKeyFile, readKeyFileContent, type StoredKey} from '../../core/keys.js'
import {renderTemplate} from '../../core/templates.js'
import {AGENT_KEY_FILE_NAME, MAIN_KEY_FILE_NAME} from '../init.js'
import {delegationText, registerWithMarketplace} from '../register.js'
import {ensureApiAccess, type AccessStatus, type ApiAccessResult} from './api-access.js'
import type {Asker} from './asker.js'
import {createTemplate, IMAGE_IDS, isImageId, planTemplates, type ImageId, type TemplatePlan} from './cloud-templates.js'
import {readExistingConfig, writeConfig, type ConfigWrite} from './config-file.js'
import {parsePvesmStatus, readHostFacts, type HostFacts} from './host-facts.js'
import {expectedHostKey, hostKeyDecision, rememberHost, type HostKeySource} from './host-key.js'
import {runSteps, type ProgressMode, type Step} from './progress.js'
import {RemoteHost} from './remote.js'
import {SshSession, type SshAuth} from './ssh.js'
import {checkToken, secretStillWorks, type TokenCheckResult} from './token-check.js'

/** Each answer's flag and environment variable, as the command declares them and as errors name them. */
export const ANSWER_SOURCES = {
  host: {flag: '--host', env: 'OUTPOST_PROXMOX_HOST'},
  sshPort: {flag: '--ssh-port', env: 'OUTPOST_SSH_PORT'},
  sshUser: {flag: '--ssh-user', env: 'OUTPOST_SSH_USER'},
  sshKey: {flag: '--ssh-key', env: 'OUTPOST_SSH_KEY'},
  hostKeyFingerprint: {flag: '--host-key-fingerprint', env: 'OUTPOST_SSH_HOST_KEY_FINGERPRINT'},
  node: {flag: '--node', env: 'OUTPOST_PROXMOX_NODE'},
  storage: {flag: '--storage', env: 'OUTPOST_PROXMOX_STORAGE'},
  bridge: {flag: '--bridge', env: 'OUTPOST_PROXMOX_BRIDGE'},
  images: {flag: '--images', env: 'OUTPOST_PROXMOX_IMAGES'},
  templateVmid: {flag: '--template-vmid', env: 'OUTPOST_PROXMOX_TEMPLATE_VMID'},
  imageDir: {flag: '--image-dir', env: 'OUTPOST_PROXMOX_IMAGE_DIR'},
  snippetsStorage: {flag: '--snippets-storage', env: 'OUTPOST_PROXMOX_SNIPPETS_STORAGE'},
  apiHost: {flag: '--api-host', env: 'OUTPOST_PROXMOX_API_HOST'},
  apiPort: {flag: '--api-port', env: 'OUTPOST_PROXMOX_API_PORT'},
  apiUser: {flag: '--api-user', env: 'OUTPOST_PROXMOX_API_USER'},
  tokenName: {flag: '--token-name', env: 'OUTPOST_PROXMOX_TOKEN_NAME'},
  role: {flag: '--role', env: 'OUTPOST_PROXMOX_ROLE'},
  endpoint: {flag: '--endpoint', env: 'OUTPOST_MARKETPLACE_ENDPOINT'},
  mainKeyFile: {flag: '--main-key-file', env: 'OUTPOST_MAIN_KEY_FILE'},
  providerPubkey: {flag: '--provider-pubkey', env: 'OUTPOST_PROVIDER_PUBKEY'},
  delegationSignature: {flag: '--delegation-signature', env: 'OUTPOST_DELEGATION_SIGNATURE'},
  name: {flag: '--name', env: 'OUTPOST_PROVIDER_NAME'},
  contactEmail: {flag: '--contact-email', env: 'OUTPOST_PROVIDER_CONTACT_EMAIL'},
} as const

export interface ProxmoxSetupOptions {
  configFile: string
  host?: string
  sshPort: number
  sshUser: string
  sshKey?: string
  sshKeyPassphrase?: string
  sshPassword?: string
  agentSocket?: string
  hostKeyFingerprint?: string
  node?: string
  storage?: string
  bridge?: string
  images?: string[]
  templateVmid: number
  imageDir: string
  snippetsStorage?: string
  apiHost?: string
  apiPort: number
  apiUser: string
  tokenName: string
  role: string
  endpoint?: string
  mainKeyFile?: string
  providerPubkey?: string
  delegationSignature?: string
  name?: string
  contactEmail?: string
  dryRun: boolean
}

export interface ProxmoxSetupIo {
  /** Present only when a person can answer (a terminal, no CI, no --yes, no --json). */
  asker?: Asker
  progress: ProgressMode
  log: (line: string) => void
  /** The passphrase of an encrypted main key. */
  passphrase?: () => Promise<string>
}

export type DelegationStatus = 'created' | 'updated' | 'unchanged' | 'needs_signature' | 'not_possible' | 'skipped'

export interface ProxmoxSetupResult {
  dry_run: boolean
  host: {address: string; ssh_port: number; host_key: string; host_key_source: HostKeySource; pve_version: string; node: string}
  storage: string
  bridge: string
  templates: {image: ImageId; vmid: number; name: string; status: 'created' | 'kept' | 'recreated' | 'planned'}[]
  vendor_snippet: {volume: string; status: 'created' | 'updated' | 'unchanged'}
  api_access: {role: AccessStatus; user: AccessStatus; acl: AccessStatus; token: ApiAccessResult['token']; token_id: string}
  token_check?: TokenCheckResult
  agent_key: {file: string; status: 'created' | 'kept' | 'planned'; public_key?: string}
  delegation: {status: DelegationStatus; provider_pubkey?: string; text_to_sign?: string; label: string}
  config: ConfigWrite
  /** The commands that change the host, in order (all of them in a dry run, where none ran). */
  commands: string[]
  next_steps: string[]
}

interface Missing {
  flag: string
  env: string
  why: string
}

function missingError(missing: Missing[]): UserError {
  return new UserError(`missing answers, and nothing may prompt here (no terminal, CI=true, --yes or --json):\n  ${missing.map((item) => `${item.flag} (or ${item.env}): ${item.why}`).join('\n  ')}`, {
    code: 'missing_answers',
    exit: ExitCode.usage,
    suggestion: `pass ${missing.map((item) => item.flag).join(', ')}`,
  })
}

function source(key: keyof typeof ANSWER_SOURCES, why: string): Missing {
  return {...ANSWER_SOURCES[key], why}
}

/** The main key, when it is at hand: --main-key-file, else the one `outpost init --main-key` left beside the config. */
function mainKeyFile(options: ProxmoxSetupOptions): string | undefined {
  if (options.mainKeyFile) return options.mainKeyFile
  const beside = join(dirname(options.configFile), MAIN_KEY_FILE_NAME)
  return existsSync(beside) ? beside : undefined
}

interface Plan {
  host: string
  endpoint: string
  auth: SshAuth
  existing?: OutpostConfig
  mainKey?: StoredKey
  profile: {name?: string; contact_email?: string}
}

/** Every answer that doesn't depend on the host, asked (or found missing) before any connection is made. */
async function answerStaticQuestions(options: ProxmoxSetupOptions, io: ProxmoxSetupIo): Promise<Plan> {
  const existing = readExistingConfig(options.configFile)
  const missing: Missing[] = []
  const ask = io.asker

  let host = options.host
  if (!host && ask) host = await ask.input('Proxmox host (name or address)', {validate: (value) => (/^[^\s:/]+$/.test(value) ? true : 'a host name or address, no scheme or port')})
  if (!host) missing.push(source('host', 'the Proxmox VE host to set up'))

  let endpoint = options.endpoint ?? existing?.marketplace.endpoint
  if (!endpoint && ask) endpoint = await ask.input('Marketplace API URL', {validate: (value) => (/^https?:\/\/\S+$/.test(value) ? true : 'an http:// or https:// URL')})
  if (!endpoint) missing.push(source('endpoint', 'the marketplace API URL for outpost.toml'))

  const auth: SshAuth = {
    ...(options.sshKey ? {privateKeyFile: options.sshKey} : {}),
    ...(options.sshKeyPassphrase ? {privateKeyPassphrase: options.sshKeyPassphrase} : {}),
    ...(options.sshPassword === undefined ? {} : {password: options.sshPassword}),
    ...(options.agentSocket ? {agentSocket: options.agentSocket} : {}),
  }
  if (!auth.privateKeyFile && auth.password === undefined && !auth.agentSocket) {
    if (ask) auth.password = await ask.password(`SSH password of ${options.sshUser}@${host ?? 'the host'}`)
    else missing.push({...ANSWER_SOURCES.sshKey, why: 'an SSH credential: a key file, OUTPOST_SSH_PASSWORD, or a running ssh-agent (SSH_AUTH_SOCK)'})
  }

  if (host && !ask && !expectedHostKey({hostId: `${host}:${options.sshPort}`, knownHostsFile: knownHostsFile(options), expected: options.hostKeyFingerprint})) {
    missing.push(source('hostKeyFingerprint', 'the host key is not known yet, and nobody can confirm it'))
  }

  const keyFile = mainKeyFile(options)
  let profile = {name: options.name ?? existing?.provider?.name, contact_email: options.contactEmail ?? existing?.provider?.contact_email}
  if (keyFile && !options.dryRun && (!profile.name || !profile.contact_email)) {
    if (ask) {
      profile = {
        name: profile.name ?? (await ask.input('Provider name (shown to renters)')),
        contact_email: profile.contact_email ?? (await ask.input('Contact email')),
      }
    } else {
      if (!profile.name) missing.push(source('name', 'the provider name, to register with the main key'))
      if (!profile.contact_email) missing.push(source('contactEmail', 'the contact email, to register with the main key'))
    }
  }
  if (missing.length > 0 || !host || !endpoint) throw missingError(missing)
  const mainKey = keyFile && !options.dryRun ? await readKeyFile(keyFile, {passphrase: io.passphrase}) : undefined
  return {host, endpoint, auth, existing, mainKey, profile}
}

function knownHostsFile(options: ProxmoxSetupOptions): string {
  return join(dirname(options.configFile), 'known_hosts')
}

interface Choices {
  node: string
  storage: string
  bridge: string
  images: ImageId[]
  snippetsStorage: string
}

async function choose(label: string, given: string | undefined, candidates: string[], key: keyof typeof ANSWER_SOURCES, io: ProxmoxSetupIo, missing: Missing[]): Promise<string | undefined> {
  if (given !== undefined) {
    if (!candidates.includes(given)) {
      throw new UserError(`${ANSWER_SOURCES[key].flag} ${given}: the host has no such ${label}`, {
        code: 'invalid_flag',
        exit: ExitCode.usage,
        suggestion: candidates.length > 0 ? `choose one of: ${candidates.join(', ')}` : `the host has no ${label} the wizard can use`,
      })
    }
    return given
  }
  if (candidates.length === 1) return candidates[0]
  if (candidates.length === 0) {
    throw new UserError(`the host has no ${label} the wizard can use`, {code: `no_${key}`, suggestion: `create one on the host first (see the Proxmox VE documentation on ${label}s)`})
  }
  if (io.asker) return io.asker.select(`Which ${label}?`, candidates)
  missing.push(source(key, `${label} to use, one of: ${candidates.join(', ')}`))
  return undefined
}

/** The answers that depend on what the host has. */
async function answerHostQuestions(options: ProxmoxSetupOptions, io: ProxmoxSetupIo, facts: HostFacts, host: RemoteHost): Promise<Choices> {
  const missing: Missing[] = []
  const storage = await choose('storage', options.storage, facts.storages.map((item) => item.name), 'storage', io, missing)
  const bridge = await choose('bridge', options.bridge, facts.bridges, 'bridge', io, missing)
  const snippetStorages = parsePvesmStatus(await host.mustRead(['pvesm', 'status', '--content', 'snippets'], 'listing snippet storages')).map((item) => item.name)
  if (snippetStorages.length === 0 && options.snippetsStorage === undefined) {
    throw new UserError('no storage on the host holds snippets, where the cloud-init vendor data that installs the guest agent goes', {
      code: 'no_snippets_storage',
      suggestion: 'allow snippets on a directory storage, e.g. `pvesm set local --content iso,vztmpl,backup,snippets`, then run the wizard again',
    })
  }
  const snippetsStorage =
    options.snippetsStorage === undefined && snippetStorages.includes('local')
      ? 'local'
      : await choose('snippets storage', options.snippetsStorage ?? snippetStorages[0], snippetStorages, 'snippetsStorage', io, missing)

  let images: string[] | undefined = options.images
  if (images === undefined) images = io.asker ? await io.asker.checkbox('Templates to make', IMAGE_IDS, ['ubuntu-24.04']) : ['ubuntu-24.04']
  const unknown = images.filter((image) => !isImageId(image))
  if (unknown.length > 0 || images.length === 0) {
    throw new UserError(`--images: unknown image ${unknown.join(', ') || '(none given)'}`, {code: 'invalid_flag', exit: ExitCode.usage, suggestion: `choose from ${IMAGE_IDS.join(', ')}`})
  }
  if (missing.length > 0 || !storage || !bridge || !snippetsStorage) throw missingError(missing)
  return {node: options.node ?? facts.node, storage, bridge, images: [...new Set(images)] as ImageId[], snippetsStorage}
}

function describeTemplate(plan: TemplatePlan): string {
  return `${plan.image} (VM ${plan.vmid}, ${plan.name})`
}

/**
 * `outpost setup proxmox`: from a bare Proxmox VE host to a config that `outpost run` can use. Every step looks first
 * and changes only what is missing, so running it again changes nothing.
 */
export async function setupProxmox(options: ProxmoxSetupOptions, io: ProxmoxSetupIo): Promise<ProxmoxSetupResult> {
  const plan = await answerStaticQuestions(options, io)
  const hostId = `${plan.host}:${options.sshPort}`
  const trust = hostKeyDecision({
    hostId,
    knownHostsFile: knownHostsFile(options),
    expected: options.hostKeyFingerprint,
    confirm: io.asker ? (fingerprint) => (io.asker as Asker).confirm(`The host key of ${hostId} is ${fingerprint}. Does it match \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on the host?`, false) : undefined,
  })
  if (io.progress !== 'silent') io.log(`Connecting to ${options.sshUser}@${hostId} ...`)
  // The handshake waits while a person reads the fingerprint: give them minutes, not the usual 20 seconds.
  const mayAsk = io.asker !== undefined && !expectedHostKey({hostId, knownHostsFile: knownHostsFile(options), expected: options.hostKeyFingerprint})
  const handshakeTimeoutMs = mayAsk ? 300_000 : 20_000
  const session = await SshSession.connect({host: plan.host, port: options.sshPort, username: options.sshUser, auth: plan.auth}, trust.decide, handshakeTimeoutMs)
  try {
    const hostKeySource = trust.source() ?? 'confirmed'
    if (!options.dryRun && hostKeySource !== 'known') rememberHost(knownHostsFile(options), hostId, session.hostFingerprint)
    const remote = new RemoteHost(session, options.dryRun)
    const facts = await readHostFacts(remote)
    if (io.progress !== 'silent') io.log(`Proxmox VE ${facts.pve.version} on node ${facts.node}; host key ${session.hostFingerprint} (${hostKeySource})`)
    const choices = await answerHostQuestions(options, io, facts, remote)
    const templates = await planTemplates(remote, choices.images, facts.vms, options.templateVmid)
    const primary = templates[0] as TemplatePlan
    return await runWizardSteps({options, io, plan, facts, choices, templates, primary, remote, hostKey: {fingerprint: session.hostFingerprint, source: hostKeySource}})
  } finally {
    session.close()
  }
}

interface StepContext {
  options: ProxmoxSetupOptions
  io: ProxmoxSetupIo
  plan: Plan
  facts: HostFacts
  choices: Choices
  templates: TemplatePlan[]
  primary: TemplatePlan
  remote: RemoteHost
  hostKey: {fingerprint: string; source: HostKeySource}
}

async function runWizardSteps(context: StepContext): Promise<ProxmoxSetupResult> {
  const {options, io, plan, facts, choices, templates, primary, remote} = context
  const dry = options.dryRun
  const apiHost = options.apiHost ?? plan.host
  const tokenId = `${options.apiUser}!${options.tokenName}`
  const previous = plan.existing?.provisioner.proxmox
  const knownSecret = previous && previous.token_id === tokenId && previous.host === apiHost ? previous.token_secret : undefined
  const agentKeyFile = resolveFrom(options.configFile, plan.existing?.agent.key_file ?? AGENT_KEY_FILE_NAME)
  const providerPubkey = plan.mainKey ? toHex(plan.mainKey.publicKey) : (options.providerPubkey ?? plan.existing?.marketplace.provider_pubkey)
  const label = hostname()

  const templateResults: ProxmoxSetupResult['templates'] = []
  let snippet: ProxmoxSetupResult['vendor_snippet'] = {volume: `${choices.snippetsStorage}:snippets/outpost-vendor.yaml`, status: 'unchanged'}
  let access: ApiAccessResult | undefined
  let tokenCheck: TokenCheckResult | undefined
  let agentKey: ProxmoxSetupResult['agent_key'] = {file: agentKeyFile, status: 'kept'}
  let config: ConfigWrite | undefined
  let delegation: ProxmoxSetupResult['delegation'] = {status: 'skipped', label, ...(providerPubkey ? {provider_pubkey: providerPubkey} : {})}

  const steps: Step[] = [
    {
      title: 'Cloud-init vendor data (installs the guest agent)',
      run: async () => {
        const path = (await remote.mustRead(['pvesm', 'path', snippet.volume], 'finding the snippet path')).trim()
        snippet = {...snippet, status: await remote.writeFile(path, renderTemplate('cloud-init/outpost-vendor.yaml', {}), `writing ${path}`)}
        return `${snippet.volume} ${snippet.status}`
      },
    },
    ...templates.map(
      (template): Step => ({
        title: `Template ${describeTemplate(template)}`,
        run: async () => {
          if (template.action === 'keep') {
            templateResults.push({image: template.image, vmid: template.vmid, name: template.name, status: 'kept'})
            return 'already there, kept'
          }
          await createTemplate(remote, template, {storage: choices.storage, bridge: choices.bridge, imageDir: options.imageDir, vendorSnippet: snippet.volume})
          const status = dry ? 'planned' : template.action === 'recreate' ? 'recreated' : 'created'
          templateResults.push({image: template.image, vmid: template.vmid, name: template.name, status})
          return dry ? 'planned (dry run)' : status
        },
      }),
    ),
    {
      title: `API access (role ${options.role}, user ${options.apiUser}, token ${tokenId})`,
      run: async () => {
        const target = {host: apiHost, port: options.apiPort, tokenId, tlsFingerprint: facts.tlsFingerprint, templateVmids: []}
        const knownSecretWorks = knownSecret !== undefined && (await secretStillWorks({...target, tokenSecret: knownSecret}))
        access = await ensureApiAccess(remote, {role: options.role, user: options.apiUser, tokenName: options.tokenName, pveMajor: facts.pve.major, knownSecretWorks})
        return `role ${access.role}, user ${access.user}, ACL ${access.acl}, token ${access.token}`
      },
    },
    {
      title: `Token check against https://${apiHost}:${options.apiPort} (pinned ${facts.tlsFingerprint.slice(0, 11)}...)`,
      run: async () => {
        const secret = access?.secret ?? knownSecret
        if (dry || secret === undefined) return 'skipped (dry run)'
        tokenCheck = await checkToken({host: apiHost, port: options.apiPort, tokenId, tokenSecret: secret, tlsFingerprint: facts.tlsFingerprint, templateVmids: templates.map((item) => item.vmid)})
        return `Proxmox VE ${tokenCheck.pve_version}, sees template ${tokenCheck.templates_visible.join(', ')}`
      },
    },
    {
      title: 'Agent key',
      run: async () => {
        if (existsSync(agentKeyFile)) {
          agentKey = {file: agentKeyFile, status: 'kept', public_key: readKeyFileContent(agentKeyFile).public_key}
          return `${agentKeyFile} kept`
        }
        if (dry) {
          agentKey = {file: agentKeyFile, status: 'planned'}
          return `${agentKeyFile} would be created`
        }
        const created = createKeyFile(agentKeyFile, 'agent')
        agentKey = {file: agentKeyFile, status: 'created', public_key: toHex(created.key.publicKey)}
        return `${agentKeyFile} created`
      },
    },
    {
      title: `Config ${options.configFile}`,
      run: async () => {
        const secret = access?.secret ?? knownSecret
        config = writeConfig(
          options.configFile,
          {
            endpoint: plan.endpoint,
            providerPubkey,
            keyFile: plan.existing?.agent.key_file ?? AGENT_KEY_FILE_NAME,
            host: apiHost,
            port: options.apiPort,
            tokenId,
            // A dry run makes no token: a placeholder of the right form stands in for validation.
            tokenSecret: secret ?? '00000000-0000-0000-0000-000000000000',
            tlsFingerprint: facts.tlsFingerprint,
            node: choices.node,
            templateVmid: primary.vmid,
          },
          dry,
        )
        return `${config.status}${dry ? ' (dry run: not written)' : ''}${config.backup ? `, backup ${config.backup}` : ''}`
      },
    },
    {
      title: 'Agent delegation',
      run: async () => {
        delegation = await delegate({options, plan, agentKeyFile, providerPubkey, label, dry})
        return delegation.status.replaceAll('_', ' ')
      },
    },
  ]
  await runSteps(steps, io.progress, io.log)

  const result: ProxmoxSetupResult = {
    dry_run: dry,
    host: {address: plan.host, ssh_port: options.sshPort, host_key: context.hostKey.fingerprint, host_key_source: context.hostKey.source, pve_version: facts.pve.version, node: choices.node},
    storage: choices.storage,
    bridge: choices.bridge,
    templates: templateResults,
    vendor_snippet: snippet,
    api_access: withoutSecret(access as ApiAccessResult),
    ...(tokenCheck ? {token_check: tokenCheck} : {}),
    agent_key: agentKey,
    delegation,
    config: config as ConfigWrite,
    commands: remote.changes,
    next_steps: [],
  }
  result.next_steps = nextSteps(result, options)
  return result
}

function withoutSecret(access: ApiAccessResult): ProxmoxSetupResult['api_access'] {
  return {role: access.role, user: access.user, acl: access.acl, token: access.token, token_id: access.tokenId}
}

async function delegate(input: {options: ProxmoxSetupOptions; plan: Plan; agentKeyFile: string; providerPubkey?: string; label: string; dry: boolean}): Promise<ProxmoxSetupResult['delegation']> {
  const {options, plan, agentKeyFile, providerPubkey, label} = input
  const base = {label, ...(providerPubkey ? {provider_pubkey: providerPubkey} : {})}
  if (input.dry) return {...base, status: 'skipped'}
  const terms = {permissions: [...AGENT_PERMISSIONS], expiresAt: null, label}
  const agentPublicKey = fromHex(readKeyFileContent(agentKeyFile).public_key, 32, 'agent public_key')
  if (plan.mainKey) {
    const registered = await registerWithMarketplace({loaded: loadConfig(options.configFile, {}), mainKey: plan.mainKey, agentKey: {publicKey: agentPublicKey}, profile: plan.profile, ...terms})
    return {...base, status: registered.delegation.status === 'skipped' || registered.delegation.status === 'differs' ? 'skipped' : registered.delegation.status}
  }
  if (!providerPubkey) return {...base, status: 'not_possible'}
  if (options.delegationSignature) {
    const agentKey = await readKeyFile(agentKeyFile)
    await registerWithMarketplace({loaded: loadConfig(options.configFile, {}), agentKey, providerPubkey, delegationSignature: options.delegationSignature, ...terms})
    return {...base, status: 'created'}
  }
  return {...base, status: 'needs_signature', text_to_sign: delegationText({agentKey: {publicKey: agentPublicKey}, ...terms}, providerPubkey)}
}

function nextSteps(result: ProxmoxSetupResult, options: ProxmoxSetupOptions): string[] {
  if (result.dry_run) return [`Run the same command without --dry-run to make these changes.`]
  const config = options.configFile
  const steps: string[] = []
  if (result.delegation.status === 'needs_signature') {
    steps.push(
      `Sign the delegation text (no trailing newline) with the provider main key, then run: outpost register --config ${config} --provider-pubkey ${result.delegation.provider_pubkey ?? '<hex>'} --expires-at never --label '${result.delegation.label}' --delegation-signature <signature hex>`,
    )
  } else if (result.delegation.status === 'not_possible') {
    steps.push(`Register and delegate the agent key: outpost register --config ${config} --main-key-file <your main key>`)
  }
  steps.push(`Add your [[offerings]] to ${config} and publish them: outpost register --config ${config} --main-key-file <your main key>`)
  steps.push(`Check everything: outpost doctor --config ${config} --verify-api`)
  steps.push(`Try one machine: outpost test-provision --config ${config}`)
  steps.push(`Start the agent: outpost run --config ${config} (or: outpost service install)`)
  return steps
}
