import {existsSync} from 'node:fs'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags} from '../../cli/flags.js'
import {agentKeySession, mainKeySession} from '../../core/api/session.js'
import {readKeyFileContent} from '../../core/keys.js'
import {listKeys, type ListedDelegation} from '../../setup/keys.js'
import {paint} from '../../ui/colors.js'
import {renderTable} from '../../ui/table.js'
import {describeTime} from '../../ui/time.js'

export default class KeysList extends BaseCommand {
  static override summary = "List the provider's delegated agent keys: permissions, expiry, last seen"
  static override description =
    'Read from the marketplace with this host\'s agent key, or with the main key when --main-key-file is given (an agent ' +
    'key whose delegation ended can no longer read the list). State: active, expiring (within 7 days), expired, revoked. ' +
    'Last seen is the last heartbeat the key signed, where the marketplace says it.'

  static override examples = ['<%= config.bin %> keys list', '<%= config.bin %> keys list --main-key-file ~/provider-main.key --json']

  static override flags = {...mainKeyFlags}

  async run(): Promise<{provider_pubkey: string; delegations: ListedDelegation[]}> {
    const {flags} = await this.parse(KeysList)
    const loaded = this.loadConfig(flags.config)
    const keyFile = loaded.paths.keyFile
    const thisAgent = existsSync(keyFile) ? readKeyFileContent(keyFile).public_key : ''
    const session = flags['main-key-file']
      ? mainKeySession(loaded, await this.mainKey(flags, 'listing delegations'))
      : agentKeySession(loaded, await this.agentKey(flags))
    const now = Date.now()
    const listed = await listKeys(session, thisAgent, now)
    if (listed.delegations.length === 0) {
      this.log(`provider ${listed.provider_pubkey} has delegated no agent key: run \`outpost register\``)
      return listed
    }
    const stateColour = {active: paint.green, expiring: paint.yellow, expired: paint.red, revoked: paint.dim}
    const rows = listed.delegations.map((delegation) => [
      `${delegation.agent_pubkey.slice(0, 16)}…${delegation.this_host ? ' (this host)' : ''}`,
      delegation.label,
      stateColour[delegation.state](delegation.state),
      delegation.expires_at === null ? 'never' : describeTime(delegation.expires_at, now),
      delegation.last_seen_at ? describeTime(delegation.last_seen_at, now) : delegation.last_seen_at === null ? 'never' : 'unknown',
      delegation.permissions.join(','),
    ])
    this.log(renderTable(['agent key', 'label', 'state', 'expires', 'last seen', 'permissions'], rows))
    for (const delegation of listed.delegations.filter((entry) => entry.state === 'expiring' && entry.this_host)) {
      this.warning(`the delegation of this host's agent key ends ${describeTime(delegation.expires_at ?? now, now)}: renew it with \`outpost register --expires-in 90d\` or \`outpost keys rotate\``)
    }
    return listed
  }
}
