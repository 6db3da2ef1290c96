import {rmSync} from 'node:fs'
import {dirname, isAbsolute, join, relative} from 'node:path'

import {createDelegation, listDelegations, revokeDelegation, type Delegation} from '../core/api/main-key.js'
import {mainKeySession, type ProviderSession} from '../core/api/session.js'
import type {LoadedConfig} from '../core/config/load.js'
import {setConfigValues} from '../core/config/save.js'
import {isAgentPermission, signDelegation, type AgentPermission} from '../core/delegation.js'
import {UserError} from '../core/errors.js'
import {timestampSlug} from '../core/files.js'
import {toHex} from '../core/hex.js'
import {createKeyFile, describeKey, readKeyFileContent} from '../core/keys.js'
import type {KeyPair} from '../core/signing.js'
import {DELEGATION_RENEW_WITHIN_MS} from './register.js'

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
  const {client, providerPubkey} = mainKeySession(options.loaded, options.mainKey)
  const oldAgent = readKeyFileContent(paths.keyFile).public_key
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

/** Where a delegation stands now: `expiring` is still valid but ends within DELEGATION_RENEW_WITHIN_MS. */
export type DelegationState = 'active' | 'expiring' | 'expired' | 'revoked'

export interface ListedDelegation extends Delegation {
  state: DelegationState
  /** The agent key of this config (the one `outpost run` on this host signs with). */
  this_host: boolean
}

export function delegationState(delegation: Delegation, now: number): DelegationState {
  if (delegation.revoked_at !== null) return 'revoked'
  if (delegation.expires_at === null) return 'active'
  if (delegation.expires_at <= now) return 'expired'
  return delegation.expires_at - now <= DELEGATION_RENEW_WITHIN_MS ? 'expiring' : 'active'
}

/** `outpost keys list`: the provider's delegations, read with the main key or this host's agent key (§5 allows both). */
export async function listKeys(session: ProviderSession, thisAgent: string, now = Date.now()): Promise<{provider_pubkey: string; delegations: ListedDelegation[]}> {
  const delegations = await listDelegations(session.client, session.providerPubkey)
  return {
    provider_pubkey: session.providerPubkey,
    delegations: delegations.map((delegation) => ({...delegation, state: delegationState(delegation, now), this_host: delegation.agent_pubkey === thisAgent})),
  }
}

/** The delegation of one agent key, or a not-found error that says where to look. */
export async function findDelegation(session: ProviderSession, agentPubkey: string): Promise<Delegation> {
  const found = (await listDelegations(session.client, session.providerPubkey)).find((delegation) => delegation.agent_pubkey === agentPubkey)
  if (!found) {
    throw new UserError(`provider ${session.providerPubkey} never delegated agent key ${agentPubkey}`, {
      code: 'no_delegation',
      suggestion: 'see the delegated keys with `outpost keys list`',
    })
  }
  return found
}

/** `outpost keys revoke`: ends a delegation now (PROTOCOL §3: the key's very next request is refused). */
export async function revokeKey(session: ProviderSession, existing: Delegation, now = Date.now()): Promise<{agent_pubkey: string; revoked_at: number; already_revoked: boolean}> {
  const agentPubkey = existing.agent_pubkey
  if (existing.revoked_at !== null) return {agent_pubkey: agentPubkey, revoked_at: existing.revoked_at, already_revoked: true}
  await revokeDelegation(session.client, session.providerPubkey, agentPubkey)
  return {agent_pubkey: agentPubkey, revoked_at: now, already_revoked: false}
}
