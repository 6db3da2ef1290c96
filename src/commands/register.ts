import {hostname} from 'node:os'
import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../cli/base-command.js'
import {lifetime, mainKeyFlags, marketplaceFlags} from '../cli/flags.js'
import {AGENT_PERMISSIONS, isAgentPermission, type AgentPermission} from '../core/delegation.js'
import {ExitCode, UserError} from '../core/errors.js'
import {fromHex} from '../core/hex.js'
import {readKeyFileContent} from '../core/keys.js'
import {checkProfileFlags} from '../setup/init-answers.js'
import {delegationText, registerWithMarketplace, type RegisterResult} from '../setup/register.js'

function parsePermissions(text: string): AgentPermission[] {
  const permissions = text.split(',').map((permission) => permission.trim()).filter(Boolean)
  const unknown = permissions.filter((permission) => !isAgentPermission(permission))
  if (unknown.length > 0 || permissions.length === 0) {
    throw new UserError(`--permissions: unknown permission ${unknown.join(', ') || '(none given)'}`, {
      code: 'invalid_permissions',
      exit: ExitCode.usage,
      suggestion: `choose from ${AGENT_PERMISSIONS.join(', ')}`,
    })
  }
  return permissions as AgentPermission[]
}

function expiry(flags: {'expires-in'?: number | 'never'; 'expires-at'?: string}, now: number): number | null {
  if (flags['expires-at'] !== undefined) {
    if (flags['expires-at'] === 'never') return null
    if (!/^\d{13}$/.test(flags['expires-at'])) {
      throw new UserError('--expires-at: expected Unix milliseconds (13 digits) or "never"', {code: 'invalid_expiry', exit: ExitCode.usage})
    }
    return Number(flags['expires-at'])
  }
  if (flags['expires-in'] === undefined || flags['expires-in'] === 'never') return null
  return now + flags['expires-in']
}

export default class Register extends BaseCommand {
  static override summary = 'Register the provider, delegate the agent key and publish the offerings'
  static override description =
    'Registers the provider profile, creates the delegation that lets the agent key act for the provider, and publishes ' +
    "the config's [[offerings]]. Idempotent: a second run changes nothing. For a main key kept offline, print the text " +
    'to sign with --print-delegation and submit the signature with --delegation-signature.'

  static override examples = [
    '<%= config.bin %> register --main-key-file ~/provider-main.key --name "Acme Compute" --contact-email ops@acme.example',
    '<%= config.bin %> register --print-delegation --provider-pubkey <hex> --expires-in 90d',
    '<%= config.bin %> register --provider-pubkey <hex> --expires-at 1795000000000 --delegation-signature <hex>',
  ]

  static override flags = {
    ...marketplaceFlags,
    ...mainKeyFlags,
    name: Flags.string({description: 'provider name (default: [provider] name)', env: 'OUTPOST_PROVIDER_NAME'}),
    'contact-email': Flags.string({description: 'contact email (default: [provider] contact_email)', env: 'OUTPOST_PROVIDER_CONTACT_EMAIL'}),
    website: Flags.string({description: 'provider website', env: 'OUTPOST_PROVIDER_WEBSITE'}),
    region: Flags.string({description: 'a region served (repeat for several)', multiple: true}),
    permissions: Flags.string({description: 'agent permissions, comma-separated', default: AGENT_PERMISSIONS.join(',')}),
    'expires-in': lifetime({description: 'delegation lifetime, like 90d, or never', exclusive: ['expires-at']}),
    'expires-at': Flags.string({description: 'delegation expiry in Unix ms, or never (for the offline flow)'}),
    label: Flags.string({description: 'delegation label', default: hostname()}),
    'print-delegation': Flags.boolean({description: 'print the delegation text for the main key to sign offline, and stop'}),
    'delegation-signature': Flags.string({description: 'main-key signature (hex) of the printed delegation text'}),
    'provider-pubkey': Flags.string({description: 'provider main public key (offline flow; default: [marketplace] provider_pubkey)'}),
  }

  async run(): Promise<RegisterResult | {delegation_text: string; expires_at: number | null; next: string}> {
    const {flags} = await this.parse(Register)
    checkProfileFlags(flags)
    const loaded = this.loadConfig(flags.config)
    const permissions = parsePermissions(flags.permissions)
    const expiresAt = expiry(flags, Date.now())
    const agentPublicKey = fromHex(readKeyFileContent(loaded.paths.keyFile).public_key, 32, 'agent public_key')

    if (flags['print-delegation']) {
      const providerPubkey = flags['provider-pubkey'] ?? loaded.config.marketplace.provider_pubkey
      if (!providerPubkey) {
        throw new UserError('--print-delegation needs the provider public key', {code: 'provider_unknown', exit: ExitCode.usage, suggestion: 'pass --provider-pubkey'})
      }
      const text = delegationText({agentKey: {publicKey: agentPublicKey}, permissions, expiresAt, label: flags.label}, providerPubkey)
      const next = `outpost register --provider-pubkey ${providerPubkey} --permissions ${[...permissions].sort().join(',')} --expires-at ${expiresAt ?? 'never'} --label '${flags.label}' --delegation-signature <signature hex>`
      if (!this.jsonEnabled()) process.stdout.write(text + '\n')
      this.logToStderr(`\nSign the text above (no trailing newline) with the provider main key (Ed25519), then run:\n  ${next}`)
      return {delegation_text: text, expires_at: expiresAt, next}
    }

    const mainKey = flags['main-key-file'] ? await this.mainKey(flags, 'registering') : undefined
    const agentKey = mainKey ? {publicKey: agentPublicKey} : await this.agentKey(flags)
    const result = await registerWithMarketplace({
      loaded,
      mainKey,
      agentKey,
      providerPubkey: flags['provider-pubkey'],
      profile: {name: flags.name, contact_email: flags['contact-email'], website: flags.website, regions: flags.region},
      permissions,
      expiresAt,
      label: flags.label,
      delegationSignature: flags['delegation-signature'],
    })
    this.log(`provider   ${result.provider_pubkey}  ${result.provider}`)
    this.log(`delegation ${result.agent_pubkey}  ${result.delegation.status} (${result.delegation.permissions.join(', ')}; expires ${result.delegation.expires_at === null ? 'never' : new Date(result.delegation.expires_at).toISOString()})`)
    for (const offering of result.offerings) {
      this.log(`offering   ${offering.name}  ${offering.status}${offering.offering_id ? ` (${offering.offering_id})` : ''}${offering.reason ? `: ${offering.reason}` : ''}`)
    }
    if (result.config_updated) this.log(`wrote provider_pubkey to ${loaded.path}`)
    for (const warning of result.warnings) this.warning(warning)
    this.log('\nNext: `outpost doctor --verify-api`, then `outpost run`.')
    return result
  }
}
