import {rmSync} from 'node:fs'
import {dirname, isAbsolute, join, relative} from 'node:path'

import {ApiClient, marketplaceClientOptions} from '../core/api/client.js'
import {createDelegation, listDelegations, revokeDelegation} from '../core/api/main-key.js'
import type {LoadedConfig} from '../core/config/load.js'
import {setConfigValues} from '../core/config/save.js'
import {isAgentPermission, signDelegation, type AgentPermission} from '../core/delegation.js'
import {ExitCode, UserError} from '../core/errors.js'
import {timestampSlug} from '../core/files.js'
import {toHex} from '../core/hex.js'
import {createKeyFile, describeKey, readKeyFileContent} from '../core/keys.js'
import type {KeyPair} from '../core/signing.js'

export interface RotateOptions {
  loaded: LoadedConfig
  mainKey: KeyPair
  graceMs: number
  passphrase?: string
  now?: number
}

export interface RotateResult {
  old_agent_pubkey: string
  new_agent: {public_key: string; fingerprint: string; file: string}
  permissions: AgentPermission[]
  old_delegation: {revoked_at: number | null; expires_at: number | null}
  config_file: string
}

/** A key file name that sorts by creation time and never collides with the one it replaces. */
function rotatedKeyFile(current: string, now: number): string {
  return join(dirname(current), `agent-${timestampSlug(new Date(now))}.key`)
}

/**
 * `outpost keys rotate`: a new agent key with the same rights, the config pointed at it (atomically), and the old
 * delegation ended: at once with no grace, else re-signed to expire when the grace ends, so the marketplace itself
 * refuses the old key from then on even if nobody comes back to revoke it.
 */
export async function rotateAgentKey(options: RotateOptions): Promise<RotateResult> {
  const now = options.now ?? Date.now()
  const {config, path, paths} = options.loaded
  const providerPubkey = toHex(options.mainKey.publicKey)
  if (config.marketplace.provider_pubkey && config.marketplace.provider_pubkey !== providerPubkey) {
    throw new UserError('the main key is not the provider key of this config', {
      code: 'wrong_main_key',
      exit: ExitCode.usage,
      suggestion: `use the main key whose public key is ${config.marketplace.provider_pubkey}`,
    })
  }
  const oldAgent = readKeyFileContent(paths.keyFile).public_key
  const client = new ApiClient({...marketplaceClientOptions(config.marketplace), key: options.mainKey})
  const old = (await listDelegations(client, providerPubkey)).find((delegation) => delegation.agent_pubkey === oldAgent && delegation.revoked_at === null)
  if (!old) {
    throw new UserError(`the current agent key ${oldAgent} has no active delegation`, {
      code: 'no_delegation',
      suggestion: 'run `outpost register` to delegate it; there is nothing to rotate from',
    })
  }
  const permissions = old.permissions.filter(isAgentPermission)

  const newFile = rotatedKeyFile(paths.keyFile, now)
  const {key} = createKeyFile(newFile, 'agent', {passphrase: options.passphrase})
  try {
    const terms = {agentPubkey: toHex(key.publicKey), providerPubkey, permissions, expiresAt: old.expires_at, label: old.label}
    await createDelegation(client, terms, signDelegation(options.mainKey, terms))
  } catch (error) {
    rmSync(newFile, {force: true})
    throw error
  }
  const configured = isAbsolute(config.agent.key_file) ? newFile : relative(dirname(path), newFile)
  setConfigValues(path, 'agent', {key_file: configured})

  let oldDelegation: RotateResult['old_delegation']
  if (options.graceMs === 0) {
    await revokeDelegation(client, providerPubkey, oldAgent)
    oldDelegation = {revoked_at: now, expires_at: old.expires_at}
  } else {
    const endsAt = old.expires_at === null ? now + options.graceMs : Math.min(old.expires_at, now + options.graceMs)
    const terms = {agentPubkey: oldAgent, providerPubkey, permissions, expiresAt: endsAt, label: old.label}
    await createDelegation(client, terms, signDelegation(options.mainKey, terms))
    oldDelegation = {revoked_at: null, expires_at: endsAt}
  }
  return {
    old_agent_pubkey: oldAgent,
    new_agent: {...describeKey(key.publicKey), file: newFile},
    permissions,
    old_delegation: oldDelegation,
    config_file: path,
  }
}
