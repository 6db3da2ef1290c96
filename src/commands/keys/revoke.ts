import {existsSync} from 'node:fs'
import * as Args from '@oclif/core/args'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags, yesFlag} from '../../cli/flags.js'
import {mainKeySession} from '../../core/api/session.js'
import {ExitCode, UserError} from '../../core/errors.js'
import {readKeyFileContent} from '../../core/keys.js'
import {findDelegation, revokeKey} from '../../setup/keys.js'
import {confirmOrRefuse} from '../../ui/confirm.js'
import {describeTime} from '../../ui/time.js'

export default class KeysRevoke extends BaseCommand {
  static override summary = "End an agent key's delegation now (signed with the provider main key; cannot be undone)"
  static override description =
    'The marketplace refuses the key from its very next request (PROTOCOL §3). Confirmed first: asked in a terminal, ' +
    '--yes otherwise. Revoking a key that is revoked already changes nothing. A revoked key can be delegated again only ' +
    'by `outpost register` with the main key.'

  static override examples = ['<%= config.bin %> keys revoke 3f1c…(64 hex) --main-key-file ~/provider-main.key', '<%= config.bin %> keys revoke 3f1c… --yes --json']

  static override args = {'agent-pubkey': Args.string({description: 'the agent public key (64 hex characters, as `outpost keys list --json` prints it)', required: true})}
  static override flags = {...mainKeyFlags, ...yesFlag}

  async run(): Promise<{agent_pubkey: string; revoked_at: number; already_revoked: boolean}> {
    const {args, flags} = await this.parse(KeysRevoke)
    const agentPubkey = args['agent-pubkey'].toLowerCase()
    if (!/^[0-9a-f]{64}$/.test(agentPubkey)) {
      throw new UserError(`${args['agent-pubkey']} is not an agent public key`, {code: 'invalid_pubkey', exit: ExitCode.usage, suggestion: 'pass the 64 hex characters that `outpost keys list --json` prints as agent_pubkey'})
    }
    const loaded = this.loadConfig(flags.config)
    const mainKey = await this.mainKey(flags, 'revoking an agent key')
    const session = mainKeySession(loaded, mainKey)
    const delegation = await findDelegation(session, agentPubkey)
    const keyFile = loaded.paths.keyFile
    const thisHost = existsSync(keyFile) && readKeyFileContent(keyFile).public_key === agentPubkey
    if (delegation.revoked_at === null) {
      const ends = delegation.expires_at === null ? 'never expires' : `expires ${describeTime(delegation.expires_at)}`
      this.log(`agent key ${agentPubkey} (${delegation.label}), ${ends}, permissions ${delegation.permissions.join(',')}`)
      if (thisHost) this.warning('this is the agent key of this config: `outpost run` here stops working until `outpost keys rotate` or `outpost register`')
      await confirmOrRefuse(`Revoke agent key ${agentPubkey.slice(0, 16)}…? It can't be undone.`, 'revoking an agent key', {yes: flags.yes, json: this.jsonEnabled()})
    }
    const result = await revokeKey(session, delegation)
    this.log(result.already_revoked ? `agent key ${agentPubkey} was revoked already (${new Date(result.revoked_at).toISOString()}); nothing changed` : `agent key ${agentPubkey} revoked`)
    return result
  }
}
