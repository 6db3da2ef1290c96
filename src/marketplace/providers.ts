import type {z} from 'zod'

import {verifyDelegation, type AgentPermission} from '../core/delegation.js'
import type {DelegationRow} from './auth.js'
import {fromJsonColumn, type MarketplaceContext} from './context.js'
import {HttpError, invalidBody, notFound, unauthenticated} from './http-error.js'
import type {DelegationBody, HeartbeatBody, ProviderBody, ProviderStatusBody} from './schemas.js'
import type {StakeBook, StakeView} from './stake.js'

/** §5: an agent is online while its last heartbeat is under 300 s old. */
export const ONLINE_WINDOW_MS = 300_000

interface ProviderRow {
  pubkey: string
  name: string
  contact_email: string
  website: string | null
  regions: string
  status: 'active' | 'paused'
  status_reason: string | null
  created_at: number
  updated_at: number
  heartbeat_at: number | null
  agent_version: string | null
  provisioner_type: string | null
  active_contracts: number | null
  heartbeat_status: 'active' | 'draining' | null
}

export interface ProviderView {
  pubkey: string
  name: string
  contact_email: string
  website: string | null
  regions: string[]
  status: 'active' | 'paused'
  status_reason: string | null
  created_at: number
  updated_at: number
}

export interface AgentStatusView {
  online: boolean
  last_heartbeat_at: number | null
  version: string | null
  provisioner_type: string | null
  active_contracts: number | null
}

export interface DelegationView {
  agent_pubkey: string
  provider_pubkey: string
  permissions: string[]
  expires_at: number | null
  label: string
  created_at: number
  revoked_at: number | null
  /** Devnet addition: the last heartbeat this key signed (null: none yet). */
  last_seen_at: number | null
}

function providerView(row: ProviderRow): ProviderView {
  return {
    pubkey: row.pubkey,
    name: row.name,
    contact_email: row.contact_email,
    website: row.website,
    regions: fromJsonColumn<string[]>(row.regions) ?? [],
    status: row.status,
    status_reason: row.status_reason,
    created_at: row.created_at,
    updated_at: row.updated_at,
  }
}

export function delegationView(row: DelegationRow): DelegationView {
  return {
    agent_pubkey: row.agent_pubkey,
    provider_pubkey: row.provider_pubkey,
    permissions: row.permissions.split(','),
    expires_at: row.expires_at,
    label: row.label,
    created_at: row.created_at,
    revoked_at: row.revoked_at,
    last_seen_at: row.last_seen_at,
  }
}

/** §5: providers, their delegations, heartbeats. */
export class ProviderRegistry {
  private readonly byPubkey
  private readonly insert
  private readonly update
  private readonly setStatus
  private readonly delegation
  private readonly delegations
  private readonly upsertDelegation
  private readonly revoke
  private readonly recordHeartbeat
  private readonly recordAgentHeartbeat
  private readonly recordKeySeen
  private readonly agentHeartbeats

  constructor(
    private readonly context: MarketplaceContext,
    private readonly stake: StakeBook,
  ) {
    const {db} = context
    this.byPubkey = db.prepare<[string], ProviderRow>('SELECT * FROM providers WHERE pubkey = ?')
    this.insert = db.prepare(
      "INSERT INTO providers (pubkey, name, contact_email, website, regions, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
    )
    this.update = db.prepare('UPDATE providers SET name = ?, contact_email = ?, website = ?, regions = ?, updated_at = ? WHERE pubkey = ?')
    this.setStatus = db.prepare('UPDATE providers SET status = ?, status_reason = ?, updated_at = ? WHERE pubkey = ?')
    this.delegation = db.prepare<[string], DelegationRow>('SELECT * FROM delegations WHERE agent_pubkey = ?')
    this.delegations = db.prepare<[string], DelegationRow>('SELECT * FROM delegations WHERE provider_pubkey = ? ORDER BY created_at, agent_pubkey')
    this.upsertDelegation = db.prepare(
      `INSERT INTO delegations (agent_pubkey, provider_pubkey, permissions, expires_at, label, signature, created_at, revoked_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, NULL)
       ON CONFLICT (agent_pubkey) DO UPDATE SET permissions = excluded.permissions, expires_at = excluded.expires_at,
         label = excluded.label, signature = excluded.signature, created_at = excluded.created_at, revoked_at = NULL`,
    )
    this.revoke = db.prepare('UPDATE delegations SET revoked_at = ? WHERE agent_pubkey = ? AND revoked_at IS NULL')
    this.recordHeartbeat = db.prepare(
      `UPDATE providers SET heartbeat_at = ?, agent_version = ?, provisioner_type = ?, capabilities = ?, active_contracts = ?, capacity = ?,
         active_leases = ?, free_capacity = ?, heartbeat_status = ?
       WHERE pubkey = ?`,
    )
    this.recordAgentHeartbeat = db.prepare(
      `INSERT INTO agent_heartbeats (provider_pubkey, agent_id, agent_pubkey, heartbeat_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (provider_pubkey, agent_id) DO UPDATE SET agent_pubkey = excluded.agent_pubkey, heartbeat_at = excluded.heartbeat_at`,
    )
    this.recordKeySeen = db.prepare('UPDATE delegations SET last_seen_at = ? WHERE agent_pubkey = ?')
    this.agentHeartbeats = db.prepare<[string], {agent_id: string; heartbeat_at: number}>(
      'SELECT agent_id, heartbeat_at FROM agent_heartbeats WHERE provider_pubkey = ? ORDER BY agent_id',
    )
  }

  row(pubkey: string): ProviderRow {
    const row = this.byPubkey.get(pubkey)
    if (!row) throw notFound('provider')
    return row
  }

  register(pubkey: string, body: z.infer<typeof ProviderBody>): {created: boolean; provider: ProviderView} {
    const now = this.context.clock.now()
    const regions = JSON.stringify(body.regions ?? [])
    const created = this.byPubkey.get(pubkey) === undefined
    if (created) this.insert.run(pubkey, body.name, body.contact_email, body.website ?? null, regions, now, now)
    else this.update.run(body.name, body.contact_email, body.website ?? null, regions, now, pubkey)
    return {created, provider: providerView(this.row(pubkey))}
  }

  /** GET /providers/{pk}: the provider with its agent status and stake summaries. */
  describe(pubkey: string): ProviderView & {agent_status: AgentStatusView; stake: StakeView} {
    const row = this.row(pubkey)
    return {...providerView(row), agent_status: this.agentStatusOf(row), stake: this.stake.view(pubkey)}
  }

  setProviderStatus(pubkey: string, body: z.infer<typeof ProviderStatusBody>): ProviderView {
    this.row(pubkey)
    this.setStatus.run(body.status, body.reason ?? null, this.context.clock.now(), pubkey)
    return providerView(this.row(pubkey))
  }

  /**
   * An unknown key may submit only its own first delegation (the offline flow). Never a second one: a revoked key
   * replaying an old delegation its provider once signed must stay revoked.
   */
  assertOwnFirstDelegation(signer: string, agentPubkey: string): void {
    if (agentPubkey !== signer) throw unauthenticated('unknown_key', 'this key is neither a registered provider nor a delegated agent key')
    if (this.delegation.get(agentPubkey)) {
      throw new HttpError(409, 'already_exists', 'this agent key was delegated before; only the main key can change its delegation')
    }
  }

  addDelegation(providerPubkey: string, body: z.infer<typeof DelegationBody>): DelegationView {
    this.row(providerPubkey)
    const now = this.context.clock.now()
    const permissions = [...new Set(body.permissions)].sort() as AgentPermission[]
    const terms = {agentPubkey: body.agent_pubkey, providerPubkey, permissions, expiresAt: body.expires_at, label: body.label}
    if (body.agent_pubkey === providerPubkey) throw invalidBody([{field: 'agent_pubkey', message: 'the main key cannot be its own agent key'}])
    if (this.byPubkey.get(body.agent_pubkey)) throw invalidBody([{field: 'agent_pubkey', message: 'this key is a provider main key'}])
    if (body.expires_at !== null && body.expires_at <= now) throw invalidBody([{field: 'expires_at', message: 'expected a time in the future'}])
    if (!verifyDelegation(terms, body.signature)) {
      throw invalidBody([{field: 'signature', message: 'does not verify: the main key must sign the outpost-delegation-v1 text of these terms'}])
    }
    const existing = this.delegation.get(body.agent_pubkey)
    if (existing && existing.provider_pubkey !== providerPubkey) {
      throw new HttpError(409, 'already_exists', 'this agent key is already delegated by another provider')
    }
    this.upsertDelegation.run(body.agent_pubkey, providerPubkey, permissions.join(','), body.expires_at, body.label, body.signature, now)
    const row = this.delegation.get(body.agent_pubkey)
    if (!row) throw new Error('the delegation just written is missing')
    return delegationView(row)
  }

  listDelegations(providerPubkey: string): {delegations: DelegationView[]} {
    this.row(providerPubkey)
    return {delegations: this.delegations.all(providerPubkey).map(delegationView)}
  }

  /** Revoking twice is fine: the first revocation time stays. */
  revokeDelegation(providerPubkey: string, agentPubkey: string): void {
    const row = this.delegation.get(agentPubkey)
    if (!row || row.provider_pubkey !== providerPubkey) throw notFound('delegation')
    this.revoke.run(this.context.clock.now(), agentPubkey)
  }

  /**
   * §5 heartbeat. With an `agent_id` (devnet addition) the agent's own heartbeat is kept too, and every answer lists
   * the provider's agents with the age of their last heartbeat: how an agent learns that a sibling died.
   */
  heartbeat(
    providerPubkey: string,
    agentPubkey: string,
    body: z.infer<typeof HeartbeatBody>,
  ): {acknowledged: true; next_heartbeat_seconds: number; agents: {agent_id: string; last_heartbeat_age_ms: number}[]} {
    const now = this.context.clock.now()
    const wasDraining = this.byPubkey.get(providerPubkey)?.heartbeat_status === 'draining'
    const changes = this.recordHeartbeat.run(
      now,
      body.version,
      body.provisioner_type,
      JSON.stringify(body.capabilities),
      body.active_contracts,
      body.capacity === undefined ? null : JSON.stringify(body.capacity),
      body.active_leases ?? null,
      body.free === undefined ? null : JSON.stringify(body.free),
      body.status ?? 'active',
      providerPubkey,
    ).changes
    if (changes === 0) throw notFound('provider')
    this.recordKeySeen.run(now, agentPubkey)
    // New capabilities, capacity or the end of draining may open jobs to this provider's waiting long poll.
    this.context.jobs.notify(providerPubkey)
    // The end of a drain opens pending contracts to the agent's waiting long poll.
    if (wasDraining && body.status !== 'draining') this.context.pending.notify(providerPubkey)
    if (body.agent_id !== undefined) this.recordAgentHeartbeat.run(providerPubkey, body.agent_id, agentPubkey, now)
    const agents = this.agentHeartbeats.all(providerPubkey).map((row) => ({agent_id: row.agent_id, last_heartbeat_age_ms: Math.max(0, now - row.heartbeat_at)}))
    return {acknowledged: true, next_heartbeat_seconds: this.context.settings.heartbeatSeconds, agents}
  }

  agentStatus(providerPubkey: string): AgentStatusView {
    return this.agentStatusOf(this.row(providerPubkey))
  }

  private agentStatusOf(row: ProviderRow): AgentStatusView {
    return {
      online: row.heartbeat_at !== null && this.context.clock.now() - row.heartbeat_at < ONLINE_WINDOW_MS,
      last_heartbeat_at: row.heartbeat_at,
      version: row.agent_version,
      provisioner_type: row.provisioner_type,
      active_contracts: row.active_contracts,
    }
  }
}
