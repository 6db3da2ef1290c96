import {ApiClient, marketplaceClientOptions} from '../core/api/client.js'
import type {LoadedConfig} from '../core/config/load.js'
import {ExitCode, UserError} from '../core/errors.js'
import {toHex} from '../core/hex.js'
import {readKeyFile} from '../core/keys.js'
import type {KeyPair} from '../core/signing.js'

/** A client that signs with the provider main key, and the provider it speaks for. */
export interface ProviderSession {
  client: ApiClient
  providerPubkey: string
}

export interface MainKeySource {
  /** --main-key-file / OUTPOST_MAIN_KEY_FILE */
  file: string | undefined
  passphrase: () => Promise<string>
}

/** Reads the main key; `why` names the command in the error, since agent keys can never do these things (§3). */
export async function readMainKey(source: MainKeySource, why: string): Promise<KeyPair> {
  if (!source.file) {
    throw new UserError(`${why} is signed with the provider main key, and no main key file was given`, {
      code: 'main_key_required',
      exit: ExitCode.usage,
      suggestion: 'pass --main-key-file FILE or set OUTPOST_MAIN_KEY_FILE (the agent key is never allowed to do this)',
    })
  }
  const key = await readKeyFile(source.file, {passphrase: source.passphrase})
  if (key.type !== 'provider-main') {
    throw new UserError(`${source.file} holds a ${key.type} key, not the provider main key`, {
      code: 'wrong_key_type',
      exit: ExitCode.usage,
      suggestion: 'point --main-key-file at the key made by `outpost init --main-key`',
    })
  }
  return key
}

export function apiClient(loaded: LoadedConfig, key?: KeyPair): ApiClient {
  return new ApiClient({...marketplaceClientOptions(loaded.config.marketplace), key})
}

/** The main key's session; refuses a main key that is not the provider this config was registered as. */
export function mainKeySession(loaded: LoadedConfig, mainKey: KeyPair): ProviderSession {
  const providerPubkey = toHex(mainKey.publicKey)
  const configured = loaded.config.marketplace.provider_pubkey
  if (configured && configured !== providerPubkey) {
    throw new UserError('the main key is not the provider key of this config', {
      code: 'wrong_main_key',
      exit: ExitCode.usage,
      suggestion: `use the main key whose public key is ${configured}`,
    })
  }
  return {client: apiClient(loaded, mainKey), providerPubkey}
}

/** The provider of this config, for public reads: [marketplace] provider_pubkey, else the main key's. */
export function configuredProvider(loaded: LoadedConfig, mainKeyPublic?: Uint8Array): string {
  const pubkey = loaded.config.marketplace.provider_pubkey ?? (mainKeyPublic ? toHex(mainKeyPublic) : undefined)
  if (!pubkey) {
    throw new UserError('the provider public key is unknown', {
      code: 'provider_unknown',
      exit: ExitCode.usage,
      suggestion: 'run `outpost register`, or pass --main-key-file',
    })
  }
  return pubkey
}
