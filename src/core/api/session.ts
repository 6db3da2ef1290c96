import type {LoadedConfig} from '../config/load.js'
import {ExitCode, UserError} from '../errors.js'
import {toHex} from '../hex.js'
import type {KeyPair} from '../signing.js'
import type {ApiClient} from './client.js'
import {configuredClient} from './factory.js'

/** A client that signs for a provider (with its main key, or an agent key it delegated), and that provider. */
export interface ProviderSession {
  client: ApiClient
  providerPubkey: string
}

/** The provider of this config, for public reads: [marketplace] provider_pubkey, else the main key's. */
export function configuredProvider(loaded: LoadedConfig, mainKeyPublic?: string): string {
  const pubkey = loaded.config.marketplace.provider_pubkey ?? mainKeyPublic
  if (!pubkey) {
    throw new UserError('the provider public key is unknown', {
      code: 'provider_unknown',
      exit: ExitCode.usage,
      suggestion: 'run `outpost register`, or pass --main-key-file',
    })
  }
  return pubkey
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
  return {client: configuredClient(loaded, 'interactive', {key: mainKey}), providerPubkey}
}

/** The agent key's session, for the provider of this config. */
export function agentKeySession(loaded: LoadedConfig, agentKey: KeyPair): ProviderSession {
  return {client: configuredClient(loaded, 'interactive', {key: agentKey}), providerPubkey: configuredProvider(loaded)}
}
