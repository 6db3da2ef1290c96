import {existsSync} from 'node:fs'
import {join} from 'node:path'
import {Flags} from '@oclif/core'

import {fromHex} from '../../core/hex.js'
import {describeKey, readKeyFileContent} from '../../core/keys.js'
import {MAIN_KEY_FILE_NAME} from '../../setup/init.js'
import {BaseCommand} from '../../ui/base-command.js'

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
    'main-key-file': Flags.string({description: 'provider main key file', env: 'OUTPOST_MAIN_KEY_FILE'}),
  }

  async run(): Promise<{keys: ShownKey[]; provider_pubkey?: string}> {
    const {flags} = await this.parse(KeysShow)
    const loaded = this.loadConfig(flags.config)
    const defaultMain = join(this.configDirectory, MAIN_KEY_FILE_NAME)
    const mainFile = flags['main-key-file'] ?? (existsSync(defaultMain) ? defaultMain : undefined)
    const files: [ShownKey['role'], string][] = [['agent', loaded.paths.keyFile], ...(mainFile ? [['provider-main', mainFile] as [ShownKey['role'], string]] : [])]
    const keys = files.map(([role, file]): ShownKey => {
      const content = readKeyFileContent(file)
      return {role, file, ...describeKey(fromHex(content.public_key, 32, 'public_key')), encrypted: 'encrypted' in content}
    })
    for (const key of keys) this.log(`${key.role.padEnd(13)} ${key.public_key}  ${key.fingerprint}${key.encrypted ? '  (encrypted)' : ''}\n${' '.repeat(14)}${key.file}`)
    const providerPubkey = loaded.config.marketplace.provider_pubkey
    if (providerPubkey) this.log(`registered as provider ${providerPubkey}`)
    return {keys, ...(providerPubkey ? {provider_pubkey: providerPubkey} : {})}
  }
}
