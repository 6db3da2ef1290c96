import * as Flags from '@oclif/core/flags'

import {answerFlag} from '../../cli/answers.js'
import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFile, passphraseFile} from '../../cli/flags.js'
import {checkEndpoint, checkProfileFlags} from '../../setup/init-answers.js'
import {PROXMOX_ANSWERS as ANSWERS} from '../../setup/proxmox/answers.js'
import {inquirerAsker} from '../../ui/asker.js'
import {setupProxmox, type ProxmoxSetupResult} from '../../setup/proxmox/wizard.js'
import {paint} from '../../ui/colors.js'
import {canPrompt} from '../../ui/interactive.js'
import {progressMode} from '../../ui/tasks.js'

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
    '<%= config.bin %> setup proxmox --host pve.example.net --gpus all',
  ]

  static override flags = {
    host: answerFlag(ANSWERS.host),
    'ssh-port': answerFlag(ANSWERS['ssh-port']),
    'ssh-user': answerFlag(ANSWERS['ssh-user']),
    'ssh-key': answerFlag(ANSWERS['ssh-key']),
    'host-key-fingerprint': answerFlag(ANSWERS['host-key-fingerprint']),
    node: answerFlag(ANSWERS.node),
    storage: answerFlag(ANSWERS.storage),
    bridge: answerFlag(ANSWERS.bridge),
    images: answerFlag(ANSWERS.images),
    'template-vmid': answerFlag(ANSWERS['template-vmid']),
    'image-dir': answerFlag(ANSWERS['image-dir']),
    'snippets-storage': answerFlag(ANSWERS['snippets-storage']),
    'api-host': answerFlag(ANSWERS['api-host']),
    'api-port': answerFlag(ANSWERS['api-port']),
    'api-user': answerFlag(ANSWERS['api-user']),
    'token-name': answerFlag(ANSWERS['token-name']),
    role: answerFlag(ANSWERS.role),
    pool: answerFlag(ANSWERS.pool),
    endpoint: answerFlag(ANSWERS.endpoint),
    name: answerFlag(ANSWERS.name),
    'contact-email': answerFlag(ANSWERS['contact-email']),
    'provider-pubkey': answerFlag(ANSWERS['provider-pubkey']),
    'delegation-signature': answerFlag(ANSWERS['delegation-signature']),
    gpus: answerFlag(ANSWERS.gpus),
    'main-key-file': mainKeyFile({description: 'provider main key, to delegate the agent key (default: provider-main.key beside the config)'}),
    'passphrase-file': passphraseFile,
    yes: Flags.boolean({char: 'y', description: 'ask nothing: take defaults, and fail on a missing answer', default: false}),
    'dry-run': Flags.boolean({description: 'read the host and print the commands that would change it; change nothing', default: false}),
  }

  async run(): Promise<ProxmoxSetupResult> {
    const {flags} = await this.parse(SetupProxmox)
    checkProfileFlags(flags)
    if (flags.endpoint !== undefined) checkEndpoint(flags.endpoint)
    const json = this.jsonEnabled()
    const result = await setupProxmox(
      {
        configFile: this.configFile(flags.config),
        answers: flags,
        mainKeyFile: flags['main-key-file']?.path,
        sshKeyPassphrase: process.env.OUTPOST_SSH_KEY_PASSPHRASE,
        sshPassword: process.env.OUTPOST_SSH_PASSWORD,
        agentSocket: process.env.SSH_AUTH_SOCK || undefined,
        dryRun: flags['dry-run'],
      },
      {
        asker: !json && canPrompt({yes: flags.yes}) ? inquirerAsker() : undefined,
        // --yes in a terminal asks nothing but still shows the task list.
        progress: progressMode(json),
        log: (line) => this.log(line),
        passphrase: this.passphrase(flags),
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
