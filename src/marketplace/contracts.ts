import type {z} from 'zod'

import {formatAmount, parseAmount} from '../core/decimal.js'
import {randomHex, verifyUsageRecord} from '../core/signing.js'
import type {SignedRequestRecord} from './auth.js'
import {fromJsonColumn, type MarketplaceContext} from './context.js'
import {HttpError, invalidBody, invalidTransition, notFound, type FieldIssue} from './http-error.js'
import type {ContractBody, HealthBody, InstanceBody, OfferingBody, ProvisioningBody, ReconcileBody, UsageBody} from './schemas.js'
import type {StakeBook} from './stake.js'
import {tierLoadCounter} from './tier-load.js'

/** §6: a contract gets at most this many provisioning attempts in all. */
export const MAX_PROVISIONING_ATTEMPTS = 3
const HOUR_MS = 3_600_000
/** Health checks kept per contract (about a week at one a minute); the oldest make room for new ones. */
export const DEFAULT_HEALTH_CHECKS_PER_CONTRACT = 10_000
/** Health checks are kept this long; the summary's `days` reaches back at most this far. */
export const HEALTH_RETENTION_MS = 90 * 24 * HOUR_MS
/** A check may be dated at most this far ahead of the server's clock (§2's window). */
const HEALTH_FUTURE_MS = 300_000
const HEALTH_PRUNE_INTERVAL_MS = 60_000

type ContractStatus = 'accepted' | 'provisioning' | 'provisioned' | 'active' | 'completed' | 'provisioning_failed' | 'cancelled' | 'expired' | 'terminated'
type Instance = z.infer<typeof InstanceBody>

/** Statuses a contract leaves only by being cancelled or expiring. */
const RUNNING: readonly ContractStatus[] = ['accepted', 'provisioning', 'provisioned', 'active']
/** Statuses nothing leaves. */
const FINAL: readonly ContractStatus[] = ['terminated', 'completed', 'provisioning_failed']

interface OfferingRow {
  offering_id: string
  provider_pubkey: string
  name: string
  product_type: string
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  gpu_count: number
  price_per_hour_micro: string
  region: string | null
  provisioner: string | null
  created_at: number
  provider_status: 'active' | 'paused'
}

export interface ContractRow {
  contract_id: string
  offering_id: string
  provider_pubkey: string
  requester_pubkey: string
  product_type: string
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  gpu_count: number
  price_per_hour_micro: string
  ssh_pubkey: string
  instance_config: string | null
  duration_hours: number
  created_at: number
  ends_at: number
  updated_at: number
  status: ContractStatus
  termination_pending: number
  provisioning_attempts: number
  last_error: string | null
  refunded: number
  instance: string | null
  provisioned_at: number | null
  ended_at: number | null
  lock_holder: string | null
  lock_expires_at: number | null
  request: string | null
}

export interface OfferingView {
  offering_id: string
  provider_pubkey: string
  name: string
  product_type: string
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  gpu_count: number
  price_per_hour: string
  region: string | null
  provisioner: string | null
  created_at: number
  /** False while the provider is paused: it takes no new contracts. */
  available: boolean
}

/** §6: a contract as the agent, the provider and the renter see it. */
export interface ContractView {
  contract_id: string
  offering_id: string
  provider_pubkey: string
  product_type: string
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  gpu_count: number
  price_per_hour: string
  requester_pubkey: string
  ssh_pubkey: string
  instance_config: Record<string, unknown> | null
  duration_hours: number
  created_at: number
  ends_at: number
  updated_at: number
  status: ContractStatus
  termination_pending: boolean
  provisioning_attempts: number
  last_error: string | null
  refunded: boolean
  instance: Instance | null
  /** §6: the renter's signed `POST /contracts` (or `POST /orders`) as received. */
  request: SignedRequestRecord | null
}

function offeringView(row: OfferingRow): OfferingView {
  return {
    offering_id: row.offering_id,
    provider_pubkey: row.provider_pubkey,
    name: row.name,
    product_type: row.product_type,
    cpu_cores: row.cpu_cores,
    memory_mb: row.memory_mb,
    storage_gb: row.storage_gb,
    gpu_count: row.gpu_count,
    price_per_hour: formatAmount(BigInt(row.price_per_hour_micro)),
    region: row.region,
    provisioner: row.provisioner,
    created_at: row.created_at,
    available: row.provider_status === 'active',
  }
}

export function contractView(row: ContractRow): ContractView {
  return {
    contract_id: row.contract_id,
    offering_id: row.offering_id,
    provider_pubkey: row.provider_pubkey,
    product_type: row.product_type,
    cpu_cores: row.cpu_cores,
    memory_mb: row.memory_mb,
    storage_gb: row.storage_gb,
    gpu_count: row.gpu_count,
    price_per_hour: formatAmount(BigInt(row.price_per_hour_micro)),
    requester_pubkey: row.requester_pubkey,
    ssh_pubkey: row.ssh_pubkey,
    instance_config: fromJsonColumn<Record<string, unknown>>(row.instance_config),
    duration_hours: row.duration_hours,
    created_at: row.created_at,
    ends_at: row.ends_at,
    updated_at: row.updated_at,
    status: row.status,
    termination_pending: row.termination_pending === 1,
    provisioning_attempts: row.provisioning_attempts,
    last_error: row.last_error,
    refunded: row.refunded === 1,
    instance: fromJsonColumn<Instance>(row.instance),
    request: fromJsonColumn<SignedRequestRecord>(row.request),
  }
}

export interface ReconcileItem {
  external_id: string
  contract_id: string | null
}

/** §6 and §7: offerings, contracts and their state machine, locks, and what the agent reports. */
export class ContractBook {
  private readonly statements
  private readonly tierLoad: (providerPubkey: string) => number
  /** The earliest `ends_at` of a running contract; undefined until first read from the database. */
  private nextEnd: number | undefined
  /** Stored health checks per contract, counted once from the database and then kept up to date. */
  private readonly healthCounts = new Map<string, number>()
  private healthPrunedAt = Number.NEGATIVE_INFINITY

  constructor(
    private readonly context: MarketplaceContext,
    private readonly stake: StakeBook,
  ) {
    const {db} = context
    this.tierLoad = tierLoadCounter(db)
    const offeringColumns = 'o.*, p.status AS provider_status FROM offerings o JOIN providers p ON p.pubkey = o.provider_pubkey'
    this.statements = {
      offering: db.prepare<[string], OfferingRow>(`SELECT ${offeringColumns} WHERE o.offering_id = ?`),
      offerings: db.prepare<[], OfferingRow>(`SELECT ${offeringColumns} ORDER BY o.created_at, o.offering_id`),
      insertOffering: db.prepare(
        `INSERT INTO offerings (offering_id, provider_pubkey, name, product_type, cpu_cores, memory_mb, storage_gb, gpu_count,
           price_per_hour_micro, region, provisioner, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      contract: db.prepare<[string], ContractRow>('SELECT * FROM contracts WHERE contract_id = ?'),
      contractProvider: db.prepare<[string], string>('SELECT provider_pubkey FROM contracts WHERE contract_id = ?').pluck(),
      insertContract: db.prepare(
        `INSERT INTO contracts (contract_id, offering_id, provider_pubkey, requester_pubkey, product_type, cpu_cores, memory_mb,
           storage_gb, gpu_count, price_per_hour_micro, ssh_pubkey, instance_config, duration_hours, created_at, ends_at, updated_at, status,
           request)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?)`,
      ),
      expireDue: db.prepare(
        `UPDATE contracts SET status = 'expired', termination_pending = 1, ended_at = ends_at, updated_at = ?
         WHERE status IN ('accepted', 'provisioning', 'provisioned', 'active') AND ends_at <= ?`,
      ),
      earliestEnd: db
        .prepare<[], number | null>("SELECT min(ends_at) FROM contracts WHERE status IN ('accepted', 'provisioning', 'provisioned', 'active')")
        .pluck(),
      agentDraining: db.prepare<[string], number>('SELECT 1 FROM draining_agents WHERE agent_pubkey = ?').pluck(),
      staleProvisioning: db.prepare<[string, number], ContractRow>(
        `SELECT * FROM contracts WHERE provider_pubkey = ? AND status = 'provisioning' AND (lock_expires_at IS NULL OR lock_expires_at <= ?)
         ORDER BY created_at, contract_id`,
      ),
      accepted: db.prepare<[string, number], ContractRow>(
        "SELECT * FROM contracts WHERE provider_pubkey = ? AND status = 'accepted' ORDER BY created_at, contract_id LIMIT ?",
      ),
      anyAccepted: db.prepare<[string], number>("SELECT 1 FROM contracts WHERE provider_pubkey = ? AND status = 'accepted' LIMIT 1").pluck(),
      acceptedCount: db.prepare<[string], number>("SELECT count(*) FROM contracts WHERE provider_pubkey = ? AND status = 'accepted'").pluck(),
      active: db.prepare<[string], ContractRow>(
        `SELECT * FROM contracts WHERE provider_pubkey = ? AND (status IN ('provisioned', 'active') OR termination_pending = 1)
         ORDER BY created_at, contract_id`,
      ),
      setStatus: db.prepare('UPDATE contracts SET status = ?, termination_pending = ?, ended_at = ?, updated_at = ? WHERE contract_id = ?'),
      setLock: db.prepare('UPDATE contracts SET lock_holder = ?, lock_expires_at = ? WHERE contract_id = ?'),
      startProvisioning: db.prepare(
        "UPDATE contracts SET status = 'provisioning', provisioning_attempts = provisioning_attempts + 1, updated_at = ? WHERE contract_id = ?",
      ),
      provisioned: db.prepare("UPDATE contracts SET status = 'provisioned', instance = ?, provisioned_at = ?, updated_at = ? WHERE contract_id = ?"),
      failed: db.prepare(
        'UPDATE contracts SET status = ?, last_error = ?, refunded = ?, lock_holder = NULL, lock_expires_at = NULL, updated_at = ? WHERE contract_id = ?',
      ),
      terminated: db.prepare(
        "UPDATE contracts SET status = 'terminated', termination_pending = 0, lock_holder = NULL, lock_expires_at = NULL, updated_at = ? WHERE contract_id = ?",
      ),
      activate: db.prepare("UPDATE contracts SET status = 'active', updated_at = ? WHERE contract_id = ? AND status = 'provisioned'"),
      insertCheck: db.prepare(
        'INSERT INTO health_checks (provider_pubkey, contract_id, status, uptime_seconds, checked_at, details) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      healthCount: db.prepare<[string], number>('SELECT count(*) FROM health_checks WHERE contract_id = ?').pluck(),
      trimHealth: db.prepare(
        'DELETE FROM health_checks WHERE id IN (SELECT id FROM health_checks WHERE contract_id = ? ORDER BY checked_at, id LIMIT ?)',
      ),
      pruneHealth: db.prepare('DELETE FROM health_checks WHERE checked_at < ?'),
      healthSince: db.prepare<[string, number], {total: number; healthy: number | null}>(
        "SELECT count(*) AS total, sum(status = 'healthy') AS healthy FROM health_checks WHERE provider_pubkey = ? AND checked_at >= ?",
      ),
      usageSigner: db
        .prepare<[string, string], number>('SELECT count(*) FROM delegations WHERE agent_pubkey = ? AND provider_pubkey = ?')
        .pluck(),
      insertUsage: db.prepare('INSERT OR IGNORE INTO usage_records (provider_pubkey, record_id, contract_id, record, received_at) VALUES (?, ?, ?, ?, ?)'),
    }
  }

  private now(): number {
    return this.context.clock.now()
  }

  /**
   * §6: a contract whose duration has passed becomes `expired`, pending termination. Runs before contracts are read;
   * it writes only once the earliest end among running contracts has passed, so reads stay reads.
   */
  expireDue(): void {
    const now = this.now()
    this.nextEnd ??= this.statements.earliestEnd.get() ?? Number.POSITIVE_INFINITY
    if (now < this.nextEnd) return
    this.statements.expireDue.run(now, now)
    this.nextEnd = this.statements.earliestEnd.get() ?? Number.POSITIVE_INFINITY
  }

  createOffering(providerPubkey: string, body: z.infer<typeof OfferingBody>): OfferingView {
    const offeringId = randomHex(16)
    this.statements.insertOffering.run(
      offeringId,
      providerPubkey,
      body.name,
      body.product_type,
      body.cpu_cores,
      body.memory_mb,
      body.storage_gb,
      body.gpu_count ?? 0,
      parseAmount(body.price_per_hour).toString(),
      body.region ?? null,
      body.provisioner ?? null,
      this.now(),
    )
    return this.offering(offeringId)
  }

  private offering(offeringId: string): OfferingView {
    const row = this.statements.offering.get(offeringId)
    if (!row) throw notFound('offering')
    return offeringView(row)
  }

  listOfferings(): {offerings: OfferingView[]} {
    return {offerings: this.statements.offerings.all().map(offeringView)}
  }

  /** A contract of an offering, keeping the renter's signed request (§6) exactly as it arrived. */
  createContract(requesterPubkey: string, body: z.infer<typeof ContractBody>, request: SignedRequestRecord | null): ContractView {
    const offering = this.statements.offering.get(body.offering_id)
    if (!offering) throw notFound('offering')
    if (offering.provider_status !== 'active') throw new HttpError(409, 'provider_paused', 'the provider of this offering is paused and takes no new contracts')
    const now = this.now()
    const contractId = randomHex(16)
    this.statements.insertContract.run(
      contractId,
      offering.offering_id,
      offering.provider_pubkey,
      requesterPubkey,
      offering.product_type,
      offering.cpu_cores,
      offering.memory_mb,
      offering.storage_gb,
      offering.gpu_count,
      offering.price_per_hour_micro,
      body.ssh_pubkey,
      body.instance_config === undefined ? null : JSON.stringify(body.instance_config),
      body.duration_hours,
      now,
      now + body.duration_hours * HOUR_MS,
      now,
      request === null ? null : JSON.stringify(request),
    )
    this.nextEnd = Math.min(this.nextEnd ?? Number.POSITIVE_INFINITY, now + body.duration_hours * HOUR_MS)
    this.context.pending.notify(offering.provider_pubkey)
    return contractView(this.row(contractId))
  }

  row(contractId: string): ContractRow {
    this.expireDue()
    const row = this.statements.contract.get(contractId)
    if (!row) throw notFound('contract')
    return row
  }

  /** A contract of this provider, or 404 (never saying whether another provider has it). */
  private ownRow(providerPubkey: string, contractId: string): ContractRow {
    const row = this.row(contractId)
    if (row.provider_pubkey !== providerPubkey) throw notFound('contract')
    return row
  }

  cancel(contractId: string): ContractView {
    const row = this.row(contractId)
    if (!RUNNING.includes(row.status)) throw invalidTransition(`a contract that is ${row.status} cannot be cancelled`)
    this.statements.setStatus.run('cancelled', 1, this.now(), this.now(), contractId)
    return contractView(this.row(contractId))
  }

  /**
   * §7 pending-provision: `accepted` contracts, as many as the tier leaves room for, and `provisioning` ones whose
   * lock expired (those already count against the tier, so they are always handed back). Nothing for an agent whose
   * last heartbeat said `draining` (§5: it gets no new contracts); its siblings still get them.
   */
  pendingProvision(providerPubkey: string, agentPubkey: string): ContractView[] {
    this.expireDue()
    if (this.statements.agentDraining.get(agentPubkey) !== undefined) return []
    const stale = this.statements.staleProvisioning.all(providerPubkey, this.now())
    // Most polls find nothing accepted: the tier's room is counted only when there is something to hand out.
    if (this.statements.anyAccepted.get(providerPubkey) === undefined) return stale.map(contractView)
    const max = this.stake.maxConcurrent(providerPubkey)
    const room = max === null ? -1 : Math.max(0, max - this.tierLoad(providerPubkey))
    const accepted = room === 0 ? [] : this.statements.accepted.all(providerPubkey, room)
    return [...stale, ...accepted].map(contractView)
  }

  /** Accepted contracts pendingProvision holds back because the provider's tier has no room for them. */
  tierLimited(providerPubkey: string): number {
    const max = this.stake.maxConcurrent(providerPubkey)
    if (max === null) return 0
    const room = Math.max(0, max - this.tierLoad(providerPubkey))
    return Math.max(0, (this.statements.acceptedCount.get(providerPubkey) ?? 0) - room)
  }

  activeContracts(providerPubkey: string): ContractView[] {
    this.expireDue()
    return this.statements.active.all(providerPubkey).map(contractView)
  }

  /** §7 lock: the holder renews by locking again; another agent key gets 409 `locked` until the lock expires. */
  lock(providerPubkey: string, contractId: string, agentPubkey: string, ttlSeconds: number): {acquired: true; contract_id: string; expires_at: number} {
    const row = this.ownRow(providerPubkey, contractId)
    if (FINAL.includes(row.status)) throw invalidTransition(`a contract that is ${row.status} cannot be locked`)
    this.assertNotLockedByAnother(row, agentPubkey)
    const expiresAt = this.now() + ttlSeconds * 1000
    this.statements.setLock.run(agentPubkey, expiresAt, contractId)
    return {acquired: true, contract_id: contractId, expires_at: expiresAt}
  }

  unlock(providerPubkey: string, contractId: string, agentPubkey: string): void {
    const row = this.ownRow(providerPubkey, contractId)
    this.assertNotLockedByAnother(row, agentPubkey)
    if (row.lock_holder === null) return
    this.statements.setLock.run(null, null, contractId)
    this.context.pending.notify(providerPubkey)
  }

  private assertNotLockedByAnother(row: ContractRow, agentPubkey: string): void {
    if (row.lock_holder !== null && row.lock_holder !== agentPubkey && (row.lock_expires_at ?? 0) > this.now()) {
      throw new HttpError(409, 'locked', 'another agent key holds the lock on this contract', [{lock_expires_at: row.lock_expires_at}])
    }
  }

  /** §6 state machine for the agent's provisioning reports. Repeating the current status changes nothing. */
  updateProvisioning(providerPubkey: string, contractId: string, agentPubkey: string, body: z.infer<typeof ProvisioningBody>): ContractView {
    const row = this.ownRow(providerPubkey, contractId)
    this.assertNotLockedByAnother(row, agentPubkey)
    if (row.status === body.status) return contractView(row)
    const now = this.now()
    const refuse = () => invalidTransition(`a contract that is ${row.status} cannot become ${body.status}`)
    switch (body.status) {
      case 'provisioning': {
        if (row.status !== 'accepted') throw refuse()
        const max = this.stake.maxConcurrent(providerPubkey)
        if (max !== null && this.tierLoad(providerPubkey) >= max) {
          throw new HttpError(409, 'tier_limit', `the provider's stake tier allows ${max} contracts and leases at once; stake more to take this one`)
        }
        this.statements.startProvisioning.run(now, contractId)
        break
      }
      case 'provisioned': {
        if (row.status !== 'provisioning') throw refuse()
        if (!body.instance) throw invalidBody([{field: 'instance', message: 'required when status is provisioned'}])
        this.statements.provisioned.run(JSON.stringify(body.instance), now, now, contractId)
        break
      }
      case 'provisioning_failed': {
        if (row.status !== 'provisioning') throw refuse()
        const retry = body.retry_possible === true && row.provisioning_attempts < MAX_PROVISIONING_ATTEMPTS
        this.statements.failed.run(retry ? 'accepted' : 'provisioning_failed', body.error ?? null, retry ? 0 : 1, now, contractId)
        if (retry) this.context.pending.notify(providerPubkey)
        break
      }
    }
    return contractView(this.row(contractId))
  }

  /** §6: a cancelled or expired contract ends once the agent reports its machine gone; reporting twice is a no-op. */
  terminated(providerPubkey: string, contractId: string, agentPubkey: string): ContractView {
    const row = this.ownRow(providerPubkey, contractId)
    if (row.status === 'terminated') return contractView(row)
    if (row.status !== 'cancelled' && row.status !== 'expired') throw invalidTransition(`a contract that is ${row.status} is not to be terminated`)
    this.assertNotLockedByAnother(row, agentPubkey)
    this.context.db.transaction(() => {
      this.statements.terminated.run(this.now(), contractId)
      if (row.provisioned_at !== null) {
        this.stake.credit(providerPubkey, BigInt(row.price_per_hour_micro), (row.ended_at ?? this.now()) - row.provisioned_at)
      }
    })()
    return contractView(this.row(contractId))
  }

  /**
   * §7 reconcile: `keep` the machines of running contracts, `terminate` those whose contract ended (or was handed
   * back to `accepted`, leaving a machine from a failed attempt), and `unknown` for contracts this provider doesn't have.
   */
  reconcile(providerPubkey: string, body: z.infer<typeof ReconcileBody>): {keep: ReconcileItem[]; terminate: ReconcileItem[]; unknown: ReconcileItem[]} {
    this.expireDue()
    const result = {keep: [] as ReconcileItem[], terminate: [] as ReconcileItem[], unknown: [] as ReconcileItem[]}
    for (const item of body.instances) {
      const row = item.contract_id === null ? undefined : this.statements.contract.get(item.contract_id)
      if (!row || row.provider_pubkey !== providerPubkey) result.unknown.push(item)
      else if (row.status === 'provisioning' || row.status === 'provisioned' || row.status === 'active') result.keep.push(item)
      else result.terminate.push(item)
    }
    return result
  }

  /**
   * §7 health: stored as a batch (all or nothing); the first `healthy` check makes a provisioned contract `active`.
   * Storage is bounded: a check is dated at most 300 s ahead, checks older than the retention are dropped, and a
   * contract keeps its latest `healthChecksPerContract` checks.
   */
  recordHealth(providerPubkey: string, body: z.infer<typeof HealthBody>): {accepted: number} {
    this.expireDue()
    const now = this.now()
    const issues: FieldIssue[] = []
    body.checks.forEach((check, index) => {
      const row = this.statements.contract.get(check.contract_id)
      if (!row || row.provider_pubkey !== providerPubkey) issues.push({field: `checks.${index}.contract_id`, message: 'no such contract for this provider'})
      if (check.checked_at > now + HEALTH_FUTURE_MS) issues.push({field: `checks.${index}.checked_at`, message: 'more than 300 s ahead of the server\'s clock'})
    })
    if (issues.length > 0) throw invalidBody(issues)
    this.pruneHealth(now)
    this.context.db.transaction(() => {
      for (const check of body.checks) {
        this.statements.insertCheck.run(
          providerPubkey,
          check.contract_id,
          check.status,
          check.uptime_seconds ?? null,
          check.checked_at,
          check.details === undefined ? null : JSON.stringify(check.details),
        )
        if (check.status === 'healthy') this.statements.activate.run(now, check.contract_id)
      }
      for (const contractId of new Set(body.checks.map((check) => check.contract_id))) this.trimHealth(contractId, body.checks.filter((check) => check.contract_id === contractId).length)
    })()
    return {accepted: body.checks.length}
  }

  /** Counts `added` new checks of a contract and drops its oldest past the cap (a tenth at a time, so rarely). */
  private trimHealth(contractId: string, added: number): void {
    const cap = this.context.settings.healthChecksPerContract
    const known = this.healthCounts.get(contractId)
    let count = known === undefined ? (this.statements.healthCount.get(contractId) ?? 0) : known + added
    if (count > cap) count -= this.statements.trimHealth.run(contractId, count - cap + Math.floor(cap / 10)).changes
    this.healthCounts.set(contractId, count)
  }

  private pruneHealth(now: number): void {
    if (now - this.healthPrunedAt < HEALTH_PRUNE_INTERVAL_MS) return
    this.healthPrunedAt = now
    if (this.statements.pruneHealth.run(now - HEALTH_RETENTION_MS).changes > 0) this.healthCounts.clear()
  }

  healthSummary(providerPubkey: string, days: number): {days: number; total_checks: number; healthy_checks: number; uptime_percent: number | null} {
    const {total, healthy} = this.statements.healthSince.get(providerPubkey, this.now() - days * 24 * HOUR_MS) ?? {total: 0, healthy: 0}
    const healthyChecks = healthy ?? 0
    return {
      days,
      total_checks: total,
      healthy_checks: healthyChecks,
      uptime_percent: total === 0 ? null : Math.round((healthyChecks / total) * 10_000) / 100,
    }
  }

  /**
   * §7 usage: every record must verify on its own and be signed by the provider's main key or one of its agent
   * keys (a revoked one too: records signed before the revocation stay valid evidence). Idempotent by record_id.
   */
  recordUsage(providerPubkey: string, body: z.infer<typeof UsageBody>): {accepted: number; duplicates: number} {
    const issues: FieldIssue[] = []
    body.records.forEach((record, index) => {
      if (this.statements.contractProvider.get(record.contract_id) !== providerPubkey) issues.push({field: `records.${index}.contract_id`, message: 'no such contract for this provider'})
      if (record.signer !== providerPubkey && this.statements.usageSigner.get(record.signer, providerPubkey) === 0) {
        issues.push({field: `records.${index}.signer`, message: 'not a key of this provider'})
      }
      if (!verifyUsageRecord(record)) issues.push({field: `records.${index}.signature`, message: 'does not verify (outpost-usage-v1 over the canonical JSON)'})
    })
    if (issues.length > 0) throw invalidBody(issues)
    const now = this.now()
    let accepted = 0
    this.context.db.transaction(() => {
      for (const record of body.records) {
        accepted += this.statements.insertUsage.run(providerPubkey, record.record_id, record.contract_id, JSON.stringify(record), now).changes
      }
    })()
    return {accepted, duplicates: body.records.length - accepted}
  }
}
