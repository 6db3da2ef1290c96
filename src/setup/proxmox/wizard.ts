import {existsSync} from 'node:fs'
import {hostname} from 'node:os'
import {dirname, join} from 'node:path'

import {loadConfig} from '../../core/config/load.js'
import {resolveFrom} from '../../core/config/paths.js'
import type {OutpostConfig} from '../../core/config/schema.js'
import {AGENT_PERMISSIONS} from '../../core/delegation.js'
import {BugError, ExitCode, UserError} from '../../core/errors.js'
import {fromHex, toHex} from '../../core/hex.js'
import {createKeyFile, readKeyFile, readKeyFileContent, type StoredKey} from '../../core/keys.js'
import {renderTemplate} from '../../core/templates.js'
import {runTasks, type ProgressMode, type Task} from '../../ui/tasks.js'
import {missingAnswersError, type MissingAnswer} from '../answers.js'
import {AGENT_KEY_FILE_NAME, MAIN_KEY_FILE_NAME} from '../init.js'
import {checkEndpoint, emailProblem, endpointProblem, nameProblem} from '../init-answers.js'
import {delegationText, registerWithMarketplace} from '../register.js'
import {ensureApiAccess, type AccessStatus, type ApiAccessResult} from './api-access.js'
import {PROXMOX_ANSWERS, type ProxmoxAnswerName, type ProxmoxAnswers} from './answers.js'
import type {Asker} from '../../ui/asker.js'
import {createTemplate, IMAGE_IDS, isImageId, planTemplates, type ImageId, type TemplatePlan} from './cloud-templates.js'
import {readExistingConfig, writeConfig, type ConfigWrite} from './config-file.js'
import {parsePvesmStatus, readHostFacts, type HostFacts} from './host-facts.js'
import {mapGpus, type GpuStepResult} from './gpus.js'
import {expectedHostKey, hostKeyDecision, rememberHost, type HostKeySource} from './host-key.js'
import {RemoteHost} from './remote.js'
import {SshSession, type SshAuth} from './ssh.js'
import {checkToken, secretStillWorks, type TokenCheckResult} from './token-check.js'

export interface ProxmoxSetupOptions {
  configFile: string
  /** The answers given as flags or OUTPOST_* variables; a wizard asks for the rest, when a person can answer. */
  answers: ProxmoxAnswers
  /** --main-key-file; else the main key `outpost init --main-key` left beside the config, when there is one. */
  mainKeyFile?: string
  sshKeyPassphrase?: string
  sshPassword?: string
  agentSocket?: string
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
  api_access: {role: AccessStatus; pool: AccessStatus; user: AccessStatus; acl: AccessStatus; token: ApiAccessResult['token']; token_id: string}
  token_check?: TokenCheckResult
  agent_key: {file: string; status: 'created' | 'kept' | 'planned'; public_key?: string}
  delegation: {status: DelegationStatus; provider_pubkey?: string; text_to_sign?: string; label: string}
  config: ConfigWrite
  /** With --gpus: the GPUs mapped for passthrough, and what the operator should know about them. */
  gpus?: {mapped: {address: string; model: string; mapping: string; status: string; driver?: string; iommugroup: number}[]; notes: string[]}
  /** The commands that change the host, in order (all of them in a dry run, where none ran). */
  commands: string[]
  next_steps: string[]
}

type Missing = MissingAnswer<typeof PROXMOX_ANSWERS>

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
  const {answers} = options
  const existing = readExistingConfig(options.configFile)
  const missing: Missing[] = []
  const ask = io.asker

  let host = answers.host
  if (!host && ask) host = await ask.input('Proxmox host (name or address)', {validate: (value) => (/^[^\s:/]+$/.test(value) ? true : 'a host name or address, no scheme or port')})
  if (!host) missing.push({name: 'host', why: 'the Proxmox VE host to set up'})

  let endpoint = answers.endpoint ?? existing?.marketplace.endpoint
  if (!endpoint && ask) endpoint = checkEndpoint(await ask.input('Marketplace API URL', {validate: (value) => endpointProblem(value) ?? true}))
  if (!endpoint) missing.push({name: 'endpoint', why: 'the marketplace API URL for outpost.toml'})

  const auth: SshAuth = {
    ...(answers['ssh-key'] ? {privateKeyFile: answers['ssh-key']} : {}),
    ...(options.sshKeyPassphrase ? {privateKeyPassphrase: options.sshKeyPassphrase} : {}),
    ...(options.sshPassword === undefined ? {} : {password: options.sshPassword}),
    ...(options.agentSocket ? {agentSocket: options.agentSocket} : {}),
  }
  if (!auth.privateKeyFile && auth.password === undefined && !auth.agentSocket) {
    if (ask) auth.password = await ask.password(`SSH password of ${answers['ssh-user']}@${host ?? 'the host'}`)
    else missing.push({name: 'ssh-key', why: 'an SSH credential: a key file, OUTPOST_SSH_PASSWORD, or a running ssh-agent (SSH_AUTH_SOCK)'})
  }

  if (host && !ask && !expectedHostKey({hostId: `${host}:${answers['ssh-port']}`, knownHostsFile: knownHostsFile(options), expected: answers['host-key-fingerprint']})) {
    missing.push({name: 'host-key-fingerprint', why: 'the host key is not known yet, and nobody can confirm it'})
  }

  const keyFile = mainKeyFile(options)
  let profile = {name: answers.name ?? existing?.provider?.name, contact_email: answers['contact-email'] ?? existing?.provider?.contact_email}
  if (keyFile && !options.dryRun && (!profile.name || !profile.contact_email)) {
    if (ask) {
      profile = {
        name: profile.name ?? (await ask.input('Provider name (shown to renters)', {validate: (value) => nameProblem(value) ?? true})),
        contact_email: profile.contact_email ?? (await ask.input('Contact email', {validate: (value) => emailProblem(value) ?? true})),
      }
    } else {
      if (!profile.name) missing.push({name: 'name', why: 'the provider name, to register with the main key'})
      if (!profile.contact_email) missing.push({name: 'contact-email', why: 'the contact email, to register with the main key'})
    }
  }
  if (missing.length > 0 || !host || !endpoint) throw missingAnswersError(PROXMOX_ANSWERS, missing)
  const mainKey = keyFile && !options.dryRun ? await readKeyFile(keyFile, {passphrase: io.passphrase, mainKey: true}) : undefined
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

async function choose(label: string, given: string | undefined, candidates: string[], name: ProxmoxAnswerName, io: ProxmoxSetupIo, missing: Missing[]): Promise<string | undefined> {
  if (given !== undefined) {
    if (!candidates.includes(given)) {
      throw new UserError(`--${name} ${given}: the host has no such ${label}`, {
        code: 'invalid_flag',
        exit: ExitCode.usage,
        suggestion: candidates.length > 0 ? `choose one of: ${candidates.join(', ')}` : `the host has no ${label} the wizard can use`,
      })
    }
    return given
  }
  if (candidates.length === 1) return candidates[0]
  if (candidates.length === 0) {
    throw new UserError(`the host has no ${label} the wizard can use`, {code: `no_${name.replaceAll('-', '_')}`, suggestion: `create one on the host first (see the Proxmox VE documentation on ${label}s)`})
  }
  if (io.asker) return io.asker.select(`Which ${label}?`, candidates)
  missing.push({name, why: `${label} to use, one of: ${candidates.join(', ')}`})
  return undefined
}

/** The images asked for: --images, else a question, else ubuntu-24.04; each one checked. */
async function chooseImages(given: string | undefined, io: ProxmoxSetupIo): Promise<ImageId[]> {
  const images = given !== undefined ? given.split(',').map((image) => image.trim()).filter(Boolean) : io.asker ? await io.asker.checkbox('Templates to make', IMAGE_IDS, ['ubuntu-24.04']) : ['ubuntu-24.04']
  const known = images.filter(isImageId)
  if (known.length < images.length || known.length === 0) {
    const unknown = images.filter((image) => !isImageId(image))
    throw new UserError(`--images: unknown image ${unknown.join(', ') || '(none given)'}`, {code: 'invalid_flag', exit: ExitCode.usage, suggestion: `choose from ${IMAGE_IDS.join(', ')}`})
  }
  return [...new Set(known)]
}

/** The answers that depend on what the host has. */
async function answerHostQuestions(options: ProxmoxSetupOptions, io: ProxmoxSetupIo, facts: HostFacts, host: RemoteHost): Promise<Choices> {
  const {answers} = options
  const missing: Missing[] = []
  const storage = await choose('storage', answers.storage, facts.storages.map((item) => item.name), 'storage', io, missing)
  const bridge = await choose('bridge', answers.bridge, facts.bridges, 'bridge', io, missing)
  const snippetStorages = parsePvesmStatus(await host.mustRead(['pvesm', 'status', '--content', 'snippets'], 'listing snippet storages')).map((item) => item.name)
  if (snippetStorages.length === 0 && answers['snippets-storage'] === undefined) {
    throw new UserError('no storage on the host holds snippets, where the cloud-init vendor data that installs the guest agent goes', {
      code: 'no_snippets_storage',
      suggestion: 'allow snippets on a directory storage, e.g. `pvesm set local --content iso,vztmpl,backup,snippets`, then run the wizard again',
    })
  }
  const snippetsStorage =
    answers['snippets-storage'] === undefined && snippetStorages.includes('local')
      ? 'local'
      : await choose('snippets storage', answers['snippets-storage'] ?? snippetStorages[0], snippetStorages, 'snippets-storage', io, missing)

  const images = await chooseImages(answers.images, io)
  if (missing.length > 0 || !storage || !bridge || !snippetsStorage) throw missingAnswersError(PROXMOX_ANSWERS, missing)
  return {node: answers.node ?? facts.node, storage, bridge, images, snippetsStorage}
}

function describeTemplate(plan: TemplatePlan): string {
  return `${plan.image} (VM ${plan.vmid}, ${plan.name})`
}

/**
 * `outpost setup proxmox`: from a bare Proxmox VE host to a config that `outpost run` can use. Every step looks first
 * and changes only what is missing, so running it again changes nothing.
 */
export async function setupProxmox(options: ProxmoxSetupOptions, io: ProxmoxSetupIo): Promise<ProxmoxSetupResult> {
  const {answers} = options
  const plan = await answerStaticQuestions(options, io)
  const hostId = `${plan.host}:${answers['ssh-port']}`
  const {asker} = io
  const trust = hostKeyDecision({
    hostId,
    knownHostsFile: knownHostsFile(options),
    expected: answers['host-key-fingerprint'],
    confirm: asker ? (fingerprint) => asker.confirm(`The host key of ${hostId} is ${fingerprint}. Does it match \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on the host?`, false) : undefined,
  })
  if (io.progress !== 'silent') io.log(`Connecting to ${answers['ssh-user']}@${hostId} ...`)
  // The handshake waits while a person reads the fingerprint: give them minutes, not the usual 20 seconds.
  const mayAsk = asker !== undefined && !expectedHostKey({hostId, knownHostsFile: knownHostsFile(options), expected: answers['host-key-fingerprint']})
  const handshakeTimeoutMs = mayAsk ? 300_000 : 20_000
  const session = await SshSession.connect({host: plan.host, port: answers['ssh-port'], username: answers['ssh-user'], auth: plan.auth}, trust.decide, handshakeTimeoutMs)
  try {
    const hostKeySource = trust.source() ?? 'confirmed'
    if (!options.dryRun && hostKeySource !== 'known') rememberHost(knownHostsFile(options), hostId, session.hostFingerprint)
    const remote = new RemoteHost(session, options.dryRun)
    const facts = await readHostFacts(remote)
    if (io.progress !== 'silent') io.log(`Proxmox VE ${facts.pve.version} on node ${facts.node}; host key ${session.hostFingerprint} (${hostKeySource})`)
    const choices = await answerHostQuestions(options, io, facts, remote)
    const [primary, ...others] = await planTemplates(remote, choices.images, facts.vms, answers['template-vmid'])
    if (!primary) throw new BugError('no template was planned for the images chosen')
    return await runWizardSteps({options, io, plan, facts, choices, templates: [primary, ...others], primary, remote, hostKey: {fingerprint: session.hostFingerprint, source: hostKeySource}})
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

/** What the wizard's tasks find, each adding its part for the tasks after it and for the result. */
interface WizardRun {
  snippet?: ProxmoxSetupResult['vendor_snippet']
  templates: ProxmoxSetupResult['templates']
  access?: ApiAccessResult
  tokenCheck?: TokenCheckResult
  agentKey?: ProxmoxSetupResult['agent_key']
  config?: ConfigWrite
  delegation?: ProxmoxSetupResult['delegation']
  gpus?: GpuStepResult
}

async function runWizardSteps(context: StepContext): Promise<ProxmoxSetupResult> {
  const {options, io, plan, facts, choices, templates, primary, remote} = context
  const {answers} = options
  const dry = options.dryRun
  const apiHost = answers['api-host'] ?? plan.host
  const apiPort = answers['api-port']
  const tokenId = `${answers['api-user']}!${answers['token-name']}`
  const previous = plan.existing?.provisioner.proxmox
  const knownSecret = previous && previous.token_id === tokenId && previous.host === apiHost ? previous.token_secret : undefined
  const agentKeyFile = resolveFrom(options.configFile, plan.existing?.agent.key_file ?? AGENT_KEY_FILE_NAME)
  const providerPubkey = plan.mainKey ? toHex(plan.mainKey.publicKey) : (answers['provider-pubkey'] ?? plan.existing?.marketplace.provider_pubkey)
  const label = hostname()
  const snippetVolume = `${choices.snippetsStorage}:snippets/outpost-vendor.yaml`
  const gpuAnswer = answers.gpus !== undefined && answers.gpus.trim() !== 'none' ? answers.gpus : undefined
  if (gpuAnswer && facts.pve.major < 8) {
    throw new UserError(`--gpus needs Proxmox VE 8 or later (this host runs ${facts.pve.version}): PCI resource mappings, the only way an API token can pass a GPU through, came with 8.0`, {
      code: 'pve_too_old',
      suggestion: 'upgrade the host, or run without --gpus',
    })
  }

  const tasks: Task<WizardRun>[] = [
    {
      title: 'Cloud-init vendor data (installs the guest agent)',
      run: async () => {
        const path = (await remote.mustRead(['pvesm', 'path', snippetVolume], 'finding the snippet path')).trim()
        const status = await remote.writeFile(path, renderTemplate('cloud-init/outpost-vendor.yaml', {}), `writing ${path}`)
        return {add: {snippet: {volume: snippetVolume, status}}, note: `${snippetVolume} ${status}`}
      },
    },
    ...templates.map(
      (template): Task<WizardRun> => ({
        title: `Template ${describeTemplate(template)}`,
        run: async (run) => {
          const made = {image: template.image, vmid: template.vmid, name: template.name}
          if (template.action === 'keep') return {add: {templates: [...run.templates, {...made, status: 'kept'}]}, note: 'already there, kept'}
          await createTemplate(remote, template, {storage: choices.storage, bridge: choices.bridge, imageDir: answers['image-dir'], vendorSnippet: snippetVolume})
          const status = dry ? 'planned' : template.action === 'recreate' ? 'recreated' : 'created'
          return {add: {templates: [...run.templates, {...made, status}]}, note: dry ? 'planned (dry run)' : status}
        },
      }),
    ),
    {
      title: `API access (role ${answers.role} on pool ${answers.pool}, user ${answers['api-user']}, token ${tokenId})`,
      run: async () => {
        const target = {host: apiHost, port: apiPort, tokenId, tlsFingerprint: facts.tlsFingerprint, templateVmids: []}
        const knownSecretWorks = knownSecret !== undefined && (await secretStillWorks({...target, tokenSecret: knownSecret}))
        const access = await ensureApiAccess(remote, {
          role: answers.role,
          user: answers['api-user'],
          tokenName: answers['token-name'],
          pveMajor: facts.pve.major,
          knownSecretWorks,
          gpuPassthrough: gpuAnswer !== undefined || (plan.existing?.gpu.passthrough.length ?? 0) > 0,
          pool: answers.pool,
          node: choices.node,
          bridge: choices.bridge,
          storage: choices.storage,
          templateVmids: templates.map((template) => template.vmid),
        })
        return {add: {access}, note: `role ${access.role}, pool ${access.pool}, user ${access.user}, ACL ${access.acl}, token ${access.token}`}
      },
    },
    {
      title: `Token check against https://${apiHost}:${apiPort} (pinned ${facts.tlsFingerprint.slice(0, 11)}...)`,
      run: async ({access}) => {
        const secret = access?.secret ?? knownSecret
        if (dry || secret === undefined) return {note: 'skipped (dry run)'}
        const tokenCheck = await checkToken({host: apiHost, port: apiPort, tokenId, tokenSecret: secret, tlsFingerprint: facts.tlsFingerprint, templateVmids: templates.map((item) => item.vmid)})
        return {add: {tokenCheck}, note: `Proxmox VE ${tokenCheck.pve_version}, sees template ${tokenCheck.templates_visible.join(', ')}`}
      },
    },
    ...(gpuAnswer === undefined
      ? []
      : [
          {
            title: `GPU passthrough (--gpus ${gpuAnswer})`,
            run: async () => {
              const gpus = await mapGpus(remote, choices.node, gpuAnswer)
              return {add: {gpus}, note: gpus.gpus.map((gpu) => `${gpu.address} ${gpu.model} → ${gpu.mapping} (${gpu.status})`).join(', ')}
            },
          } satisfies Task<WizardRun>,
        ]),
    {
      title: 'Agent key',
      run: async () => {
        if (existsSync(agentKeyFile)) return {add: {agentKey: {file: agentKeyFile, status: 'kept', public_key: readKeyFileContent(agentKeyFile).public_key}}, note: `${agentKeyFile} kept`}
        if (dry) return {add: {agentKey: {file: agentKeyFile, status: 'planned'}}, note: `${agentKeyFile} would be created`}
        const created = createKeyFile(agentKeyFile, 'agent')
        return {add: {agentKey: {file: agentKeyFile, status: 'created', public_key: toHex(created.key.publicKey)}}, note: `${agentKeyFile} created`}
      },
    },
    {
      title: `Config ${options.configFile}`,
      run: async ({access, gpus}) => {
        const secret = access?.secret ?? knownSecret
        const config = writeConfig(
          options.configFile,
          {
            endpoint: plan.endpoint,
            providerPubkey,
            keyFile: plan.existing?.agent.key_file ?? AGENT_KEY_FILE_NAME,
            host: apiHost,
            port: apiPort,
            tokenId,
            // A dry run makes no token: a placeholder of the right form stands in for validation.
            tokenSecret: secret ?? '00000000-0000-0000-0000-000000000000',
            tlsFingerprint: facts.tlsFingerprint,
            node: choices.node,
            templateVmid: primary.vmid,
            ...(gpus ? {passthrough: gpus.passthrough} : {}),
            pool: answers.pool,
          },
          dry,
        )
        return {add: {config}, note: `${config.status}${dry ? ' (dry run: not written)' : ''}${config.backup ? `, backup ${config.backup}` : ''}`}
      },
    },
    {
      title: 'Agent delegation',
      run: async () => {
        const delegation = await delegate({options, plan, agentKeyFile, providerPubkey, label, dry})
        return {add: {delegation}, note: delegation.status.replaceAll('_', ' ')}
      },
    },
  ]
  const {snippet, templates: templateResults, access, tokenCheck, agentKey, config, delegation, gpus} = await runTasks(tasks, {templates: []}, io.progress, io.log)
  if (!snippet || !access || !agentKey || !config || !delegation) throw new BugError('the setup finished with a step that did not run')

  const result: ProxmoxSetupResult = {
    dry_run: dry,
    host: {address: plan.host, ssh_port: answers['ssh-port'], host_key: context.hostKey.fingerprint, host_key_source: context.hostKey.source, pve_version: facts.pve.version, node: choices.node},
    storage: choices.storage,
    bridge: choices.bridge,
    templates: templateResults,
    vendor_snippet: snippet,
    api_access: withoutSecret(access),
    ...(tokenCheck ? {token_check: tokenCheck} : {}),
    agent_key: agentKey,
    delegation,
    config,
    ...(gpus ? {gpus: {mapped: gpus.gpus.map((gpu) => ({address: gpu.address, model: gpu.model, mapping: gpu.mapping, status: gpu.status, iommugroup: gpu.iommugroup, ...(gpu.driver ? {driver: gpu.driver} : {})})), notes: gpus.notes}} : {}),
    commands: remote.changes,
    next_steps: [],
  }
  result.next_steps = nextSteps(result, options)
  return result
}

function withoutSecret(access: ApiAccessResult): ProxmoxSetupResult['api_access'] {
  return {role: access.role, pool: access.pool, user: access.user, acl: access.acl, token: access.token, token_id: access.tokenId}
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
  const signature = options.answers['delegation-signature']
  if (signature) {
    const agentKey = await readKeyFile(agentKeyFile)
    await registerWithMarketplace({loaded: loadConfig(options.configFile, {}), agentKey, providerPubkey, delegationSignature: signature, ...terms})
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
  for (const note of result.gpus?.notes ?? []) steps.push(`GPU: ${note}`)
  if (result.gpus && result.gpus.mapped.length > 0) {
    const models = [...new Set(result.gpus.mapped.map((gpu) => gpu.model))].join(', ')
    steps.push(`${result.gpus.mapped.length} GPU(s) mapped (${models}): sell them with an offering of product_type = "gpu" and gpu_count = 1 (or more per VM); the template's VMs get the q35 machine`)
  }
  steps.push(`Add your [[offerings]] to ${config} and publish them: outpost register --config ${config} --main-key-file <your main key>`)
  steps.push(`Check everything: outpost doctor --config ${config} --verify-api`)
  steps.push(`Try one machine: outpost test-provision --config ${config}`)
  steps.push(`Start the agent: outpost run --config ${config} (or: outpost service install)`)
  return steps
}
