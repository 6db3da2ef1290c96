import {existsSync} from 'node:fs'
import {join} from 'node:path'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFile} from '../../cli/flags.js'
import {fromHex} from '../../core/hex.js'
import {describeKey, readKeyFileContent} from '../../core/keys.js'
import {MAIN_KEY_FILE_NAME} from '../../setup/init.js'

interface ShownKey {
  role: 'agent' | 'provider-main'
  file: string
  public_key: string
  fingerprint: string
  encrypted: boolean
}

export default class KeysShow extends BaseCommand {
  static override summary = 'Print the public keys and fingerprints'
  static override description = 'Shows the agent key of the config and the provider main key when its file is at hand. Never prints a secret.'

  static override flags = {
    'main-key-file': mainKeyFile(),
  }

  async run(): Promise<{keys: ShownKey[]; provider_pubkey?: string}> {
    const {flags} = await this.parse(KeysShow)
    const loaded = this.loadConfig(flags.config)
    const defaultMain = join(this.configDirectory, MAIN_KEY_FILE_NAME)
    const mainFile = flags['main-key-file']?.path ?? (existsSync(defaultMain) ? defaultMain : undefined)
    const files: {role: ShownKey['role']; file: string}[] = [{role: 'agent', file: loaded.paths.keyFile}, ...(mainFile ? [{role: 'provider-main' as const, file: mainFile}] : [])]
    const keys = files.map(({role, file}): ShownKey => {
      const content = readKeyFileContent(file, {mainKey: role === 'provider-main'})
      return {role, file, ...describeKey(fromHex(content.public_key, 32, 'public_key')), encrypted: 'encrypted' in content}
    })
    for (const key of keys) this.log(`${key.role.padEnd(13)} ${key.public_key}  ${key.fingerprint}${key.encrypted ? '  (encrypted)' : ''}\n${' '.repeat(14)}${key.file}`)
    const providerPubkey = loaded.config.marketplace.provider_pubkey
    if (providerPubkey) this.log(`registered as provider ${providerPubkey}`)
    return {keys, ...(providerPubkey ? {provider_pubkey: providerPubkey} : {})}
  }
}
