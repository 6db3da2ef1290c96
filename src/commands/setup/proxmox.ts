import {Flags} from '@oclif/core'

import {IMAGE_IDS} from '../../setup/proxmox/cloud-templates.js'
import {inquirerAsker} from '../../setup/proxmox/asker.js'
import {ANSWER_SOURCES, setupProxmox, type ProxmoxSetupResult} from '../../setup/proxmox/wizard.js'
import {BaseCommand} from '../../ui/base-command.js'
import {paint} from '../../ui/colors.js'
import {canPrompt} from '../../ui/interactive.js'
import {getPassphrase, passphraseAvailable} from '../../ui/passphrase.js'

const answer = (key: keyof typeof ANSWER_SOURCES) => ({env: ANSWER_SOURCES[key].env})

export default class SetupProxmox extends BaseCommand {
  static override summary = 'Set up a Proxmox VE host for outpost over SSH: templates, API token, keys and outpost.toml'
  static override description =
    'Connects over SSH (key, ssh-agent, or OUTPOST_SSH_PASSWORD), checks the host key, makes cloud-init templates, a ' +
    'least-privilege API token (checked against the API, pinned to the host certificate), the agent key and its ' +
    'delegation, and writes outpost.toml. Every question has a flag and an OUTPOST_* variable; with no terminal, CI=true, ' +
    '--yes or --json nothing is asked and a missing answer is an error. Running it again changes nothing.'

  static override examples = [
    '<%= config.bin %> setup proxmox --host pve.example.net --endpoint https://api.example.net',
    'OUTPOST_SSH_PASSWORD=... <%= config.bin %> setup proxmox --host 192.0.2.10 --host-key-fingerprint SHA256:... --storage local-lvm --bridge vmbr0 --yes',
    '<%= config.bin %> setup proxmox --host pve.example.net --dry-run',
  ]

  static override flags = {
    host: Flags.string({description: 'Proxmox VE host to set up (SSH and, by default, the API)', ...answer('host')}),
    'ssh-port': Flags.integer({description: 'SSH port', default: 22, min: 1, max: 65_535, ...answer('sshPort')}),
    'ssh-user': Flags.string({description: 'SSH user (root, or one that may run qm and pveum)', default: 'root', ...answer('sshUser')}),
    'ssh-key': Flags.string({description: 'SSH private key file (passphrase from OUTPOST_SSH_KEY_PASSPHRASE); the password comes from OUTPOST_SSH_PASSWORD', ...answer('sshKey')}),
    'host-key-fingerprint': Flags.string({description: "the host's SSH key fingerprint, SHA256:... (required with no terminal for a new host)", ...answer('hostKeyFingerprint')}),
    node: Flags.string({description: 'Proxmox node name (default: the host name)', ...answer('node')}),
    storage: Flags.string({description: 'storage for the template disks (asked when the host has several)', ...answer('storage')}),
    bridge: Flags.string({description: 'network bridge of the VMs (asked when the host has several)', ...answer('bridge')}),
    images: Flags.string({description: `templates to make, comma-separated: ${IMAGE_IDS.join(', ')} (default: ubuntu-24.04)`, ...answer('images')}),
    'template-vmid': Flags.integer({description: 'first VMID of the templates (one per image)', default: 9000, min: 100, ...answer('templateVmid')}),
    'image-dir': Flags.string({description: 'directory on the host where cloud images are downloaded and kept', default: '/var/lib/vz/template/cache', ...answer('imageDir')}),
    'snippets-storage': Flags.string({description: 'storage for the cloud-init vendor snippet (default: local, if it holds snippets)', ...answer('snippetsStorage')}),
    'api-host': Flags.string({description: 'host name the agent uses for the API (default: --host)', ...answer('apiHost')}),
    'api-port': Flags.integer({description: 'Proxmox API port', default: 8006, min: 1, max: 65_535, ...answer('apiPort')}),
    'api-user': Flags.string({description: 'Proxmox user the token belongs to', default: 'outpost@pve', ...answer('apiUser')}),
    'token-name': Flags.string({description: 'API token name', default: 'agent', ...answer('tokenName')}),
    role: Flags.string({description: 'Proxmox role with the privileges the agent uses', default: 'OutpostAgent', ...answer('role')}),
    endpoint: Flags.string({description: 'marketplace API base URL (default: the existing config)', ...answer('endpoint')}),
    'main-key-file': Flags.string({description: 'provider main key, to delegate the agent key (default: provider-main.key beside the config)', ...answer('mainKeyFile')}),
    'passphrase-file': Flags.string({description: 'file holding the passphrase of an encrypted main key'}),
    name: Flags.string({description: 'provider name, to register with the main key (default: [provider] name)', ...answer('name')}),
    'contact-email': Flags.string({description: 'contact email, to register with the main key (default: [provider] contact_email)', ...answer('contactEmail')}),
    'provider-pubkey': Flags.string({description: 'provider main public key, for the delegation text to sign offline', ...answer('providerPubkey')}),
    'delegation-signature': Flags.string({description: 'main-key signature (hex) of the delegation text printed by an earlier run', ...answer('delegationSignature')}),
    yes: Flags.boolean({char: 'y', description: 'ask nothing: take defaults, and fail on a missing answer', default: false}),
    'dry-run': Flags.boolean({description: 'read the host and print the commands that would change it; change nothing', default: false}),
  }

  async run(): Promise<ProxmoxSetupResult> {
    const {flags} = await this.parse(SetupProxmox)
    const json = this.jsonEnabled()
    const interactive = !json && canPrompt({yes: flags.yes})
    const passphraseSource = {file: flags['passphrase-file']}
    const result = await setupProxmox(
      {
        configFile: this.configFile(flags.config),
        host: flags.host,
        sshPort: flags['ssh-port'],
        sshUser: flags['ssh-user'],
        sshKey: flags['ssh-key'],
        sshKeyPassphrase: process.env.OUTPOST_SSH_KEY_PASSPHRASE,
        sshPassword: process.env.OUTPOST_SSH_PASSWORD,
        agentSocket: process.env.SSH_AUTH_SOCK || undefined,
        hostKeyFingerprint: flags['host-key-fingerprint'],
        node: flags.node,
        storage: flags.storage,
        bridge: flags.bridge,
        images: flags.images?.split(',').map((image) => image.trim()).filter(Boolean),
        templateVmid: flags['template-vmid'],
        imageDir: flags['image-dir'],
        snippetsStorage: flags['snippets-storage'],
        apiHost: flags['api-host'],
        apiPort: flags['api-port'],
        apiUser: flags['api-user'],
        tokenName: flags['token-name'],
        role: flags.role,
        endpoint: flags.endpoint,
        mainKeyFile: flags['main-key-file'],
        providerPubkey: flags['provider-pubkey'],
        delegationSignature: flags['delegation-signature'],
        name: flags.name,
        contactEmail: flags['contact-email'],
        dryRun: flags['dry-run'],
      },
      {
        asker: interactive ? inquirerAsker() : undefined,
        // --yes in a terminal asks nothing but still shows the task list.
        progress: json ? 'silent' : canPrompt() ? 'tty' : 'plain',
        log: (line) => this.log(line),
        passphrase: passphraseAvailable(passphraseSource) ? () => getPassphrase(passphraseSource) : undefined,
      },
    )
    this.report(result)
    return result
  }

  private report(result: ProxmoxSetupResult): void {
    const out = process.stdout
    if (result.dry_run) {
      this.log(`\n${paint.bold('Dry run: nothing was changed.', out)} Commands it would run on ${result.host.address}:`)
      for (const command of result.commands) this.log(`  ${command}`)
    } else {
      const changed = result.commands.length > 0 || result.config.status !== 'unchanged' || result.agent_key.status === 'created'
      this.log(`\n${paint.green('✓', out)} ${changed ? `${result.host.address} is set up` : `${result.host.address} was already set up: nothing changed`}; config ${result.config.file}`)
    }
    if (result.delegation.text_to_sign) {
      this.log('\nDelegation text for the provider main key to sign:')
      this.log(result.delegation.text_to_sign)
    }
    this.log('\nNext:')
    for (const step of result.next_steps) this.log(`  - ${step}`)
  }
}
