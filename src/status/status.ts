import {existsSync, readdirSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {z} from 'zod'

import {journalPath, journalState, readJournal} from '../agent/journal.js'
import {readOutbox} from '../agent/outbox.js'
import {PROBE_URL_FILE} from '../agent/probe-url.js'
import type {NotReadyReason, Readiness} from '../agent/readiness.js'
import type {ApiClient} from '../core/api/client.js'
import {ApiError} from '../core/api/api-error.js'
import {configuredClient} from '../core/api/factory.js'
import {LEASE_STATUSES} from '../core/api/job-schemas.js'
import {JobsApi} from '../core/api/jobs.js'
import {listDelegations} from '../core/api/main-key.js'
import {ProviderApi} from '../core/api/provider.js'
import {SignedUsageRecordSchema} from '../core/api/schemas.js'
import {getStake, type StakeInfo} from '../core/api/stake.js'
import type {LoadedConfig} from '../core/config/load.js'
import {formatAmount, parseAmount} from '../core/decimal.js'
import {describeError} from '../core/errors.js'
import {toHex} from '../core/hex.js'
import type {KeyPair} from '../core/signing.js'
import {nextTier} from '../stake/tiers.js'
import {runningAgentPid} from './drain.js'

/** A delegation expiring sooner than this is worth rotating now (the same bound as `doctor`'s warning). */
export const DELEGATION_WARN_MS = 7 * 24 * 3_600_000
const DAY_MS = 24 * 3_600_000
/** §3–4: the marketplace refuses the agent key itself. */
const KEY_REFUSALS = new Set(['delegation_expired', 'delegation_revoked', 'unknown_key'])

export interface AttentionItem {
  code: string
  message: string
  /** The command that fixes it. */
  command: string
}

export interface AgentView {
  running: boolean
  pid: number | null
  /** The agent's /readyz, when it answers (null: not running, metrics off, or not reachable). */
  probe_url: string | null
  ready: boolean | null
  not_ready_reasons: NotReadyReason[]
  status: 'active' | 'draining' | null
  version: string | null
  last_heartbeat_acknowledged_at: number | null
  outbox_depth: number
  /** Contracts being provisioned or terminated now (from the running agent), else the work the next run resumes. */
  in_flight: number
}

export interface MarketplaceView {
  reachable: boolean
  error: string | null
  provider_status: 'active' | 'paused' | null
  status_reason: string | null
  agent_status: AgentStatus | null
  /** The provider's running contracts by status (provisioned, active, …, and `termination_pending`); null: the agent key could not read them. */
  contracts_by_status: Record<string, number> | null
  /** Accepted contracts waiting for the agent (within the tier). */
  pending_contracts: number | null
  /** Accepted contracts the stake tier holds back. */
  tier_limited_contracts: number | null
  health: HealthSummary | null
  /** Leases by status, when the marketplace has the job routes (§12). */
  leases_by_status: Record<string, number> | null
  delegation: {agent_pubkey: string; expires_at: number | null; revoked_at: number | null} | null
  /** The marketplace refused the agent key's own reads (§4 code: delegation_expired, delegation_revoked, unknown_key), else null. */
  agent_key_refused: string | null
}

export interface MoneyView {
  staked: string
  tier: string
  max_concurrent_contracts: number | null
  rewards_pending: string
  /** From this host's usage archive: records whose period ended in the last 24 h. */
  usage_last_day: {records: number; contracts: number; cpu_core_hours: number; gpu_hours: number}
}

export interface StatusReport {
  checked_at: number
  provider_pubkey: string | null
  agent: AgentView
  marketplace: MarketplaceView
  money: MoneyView | null
  attention: AttentionItem[]
}

const AgentStatus = z.object({
  online: z.boolean(),
  last_heartbeat_at: z.number().int().nullable(),
  version: z.string().nullable(),
  provisioner_type: z.string().nullable().optional(),
  active_contracts: z.number().int().nullable(),
})
type AgentStatus = z.infer<typeof AgentStatus>

const ProviderDescription = z.looseObject({
  status: z.enum(['active', 'paused']),
  status_reason: z.string().nullish(),
  agent_status: AgentStatus,
})

const HealthSummary = z.object({total_checks: z.number().int().nonnegative(), healthy_checks: z.number().int().nonnegative(), uptime_percent: z.number().nullable()})
type HealthSummary = z.infer<typeof HealthSummary>

const ReadinessAnswer = z.looseObject({
  ready: z.boolean(),
  reasons: z.array(z.object({code: z.string(), message: z.string()})),
  status: z.enum(['active', 'draining']),
  version: z.string(),
  pid: z.number().int(),
  last_heartbeat_acknowledged_at: z.number().nullable(),
  outbox_depth: z.number().int().nonnegative(),
  in_flight: z.number().int().nonnegative(),
})

export interface StatusOptions {
  loaded: LoadedConfig
  /** The agent key, for the reads it may make (§7); undefined when it can't be read without a prompt. */
  agentKey: KeyPair | undefined
  /** Why the agent key could not be read. */
  agentKeyProblem?: string
  now?: number
}

/** `outpost status`: the agent's own view, the marketplace's, the money, and what needs attention. */
export async function collectStatus(options: StatusOptions): Promise<StatusReport> {
  const {loaded} = options
  const now = options.now ?? Date.now()
  const providerPubkey = loaded.config.marketplace.provider_pubkey ?? null
  const agent = await agentView(loaded)
  const client = configuredClient(loaded, 'interactive', options.agentKey ? {key: options.agentKey} : {})
  const {marketplace, stake} = providerPubkey ? await marketplaceView(client, providerPubkey, options.agentKey) : {marketplace: unknownMarketplace('not registered'), stake: undefined}
  const money = stake ? {...moneyOf(stake), usage_last_day: usageLastDay(loaded.paths.stateDir, now)} : null
  const report: StatusReport = {checked_at: now, provider_pubkey: providerPubkey, agent, marketplace, money, attention: []}
  report.attention = attentionItems(report, stake, now, options.agentKeyProblem)
  return report
}

// ---- the agent's own view ----

async function agentView(loaded: LoadedConfig): Promise<AgentView> {
  const stateDir = loaded.paths.stateDir
  const pid = runningAgentPid(stateDir) ?? null
  const offline: AgentView = {
    running: pid !== null,
    pid,
    probe_url: null,
    ready: null,
    not_ready_reasons: [],
    status: null,
    version: null,
    last_heartbeat_acknowledged_at: null,
    outbox_depth: existsSync(stateDir) ? readOutbox(stateDir).length : 0,
    in_flight: existsSync(stateDir) ? journalState(readJournal(journalPath(stateDir)).entries).unfinished.length : 0,
  }
  if (pid === null || !loaded.config.metrics.enabled) return offline
  const probeUrl = probeUrlOf(stateDir) ?? `http://${loaded.config.metrics.listen}`
  const readiness = await readReadiness(probeUrl)
  if (!readiness || readiness.pid !== pid) return offline
  return {
    running: true,
    pid,
    probe_url: probeUrl,
    ready: readiness.ready,
    not_ready_reasons: readiness.reasons as NotReadyReason[],
    status: readiness.status,
    version: readiness.version,
    last_heartbeat_acknowledged_at: readiness.last_heartbeat_acknowledged_at,
    outbox_depth: readiness.outbox_depth,
    in_flight: readiness.in_flight,
  }
}

function probeUrlOf(stateDir: string): string | undefined {
  try {
    const text = readFileSync(join(stateDir, PROBE_URL_FILE), 'utf8').trim()
    return /^http:\/\/[^/\s]+$/.test(text) ? text : undefined
  } catch {
    return undefined
  }
}

async function readReadiness(probeUrl: string): Promise<Pick<Readiness, 'ready' | 'status' | 'version' | 'pid' | 'last_heartbeat_acknowledged_at' | 'outbox_depth' | 'in_flight'> & {reasons: {code: string; message: string}[]} | undefined> {
  try {
    const response = await fetch(`${probeUrl}/readyz`, {signal: AbortSignal.timeout(3000)})
    const parsed = ReadinessAnswer.safeParse(await response.json())
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

// ---- the marketplace's view ----

function unknownMarketplace(error: string): MarketplaceView {
  return {
    reachable: false,
    error,
    provider_status: null,
    status_reason: null,
    agent_status: null,
    contracts_by_status: null,
    pending_contracts: null,
    tier_limited_contracts: null,
    health: null,
    leases_by_status: null,
    delegation: null,
    agent_key_refused: null,
  }
}

async function marketplaceView(client: ApiClient, providerPubkey: string, agentKey: KeyPair | undefined): Promise<{marketplace: MarketplaceView; stake: StakeInfo | undefined}> {
  let provider: z.infer<typeof ProviderDescription>
  let stake: StakeInfo
  let health: HealthSummary
  try {
    ;[provider, stake, health] = await Promise.all([
      client.get(`/providers/${providerPubkey}`, {schema: ProviderDescription, public: true}),
      getStake(client, providerPubkey),
      client.get(`/providers/${providerPubkey}/health-summary`, {schema: HealthSummary, public: true, query: {days: '30'}}),
    ])
  } catch (error) {
    return {marketplace: unknownMarketplace(describeError(error)), stake: undefined}
  }
  const view: MarketplaceView = {
    ...unknownMarketplace(''),
    reachable: true,
    error: null,
    provider_status: provider.status,
    status_reason: provider.status_reason ?? null,
    agent_status: provider.agent_status,
    health,
  }
  if (!agentKey) return {marketplace: view, stake}
  const api = new ProviderApi(client, providerPubkey)
  const agentPubkey = toHex(agentKey.publicKey)
  const once = {retry: {retries: 0, baseDelayMs: 0, maxDelayMs: 0}}
  const [active, pending, delegations, leases] = await Promise.allSettled([
    api.activeContracts(once),
    api.pendingWork(0, once),
    listDelegations(client, providerPubkey),
    new JobsApi(client, providerPubkey).leases(undefined, once),
  ])
  if (active.status === 'fulfilled') view.contracts_by_status = countBy(active.value.map((contract) => (contract.termination_pending ? 'termination_pending' : contract.status)))
  if (pending.status === 'fulfilled') {
    view.pending_contracts = pending.value.contracts.length
    view.tier_limited_contracts = pending.value.tierLimited ?? null
  }
  if (delegations.status === 'fulfilled') {
    const own = delegations.value.find((delegation) => delegation.agent_pubkey === agentPubkey)
    view.delegation = own ? {agent_pubkey: agentPubkey, expires_at: own.expires_at, revoked_at: own.revoked_at} : null
  }
  if (leases.status === 'fulfilled') view.leases_by_status = countBy(leases.value.map((lease) => lease.status), LEASE_STATUSES)
  const refusal = [active, pending, delegations].find((answer) => answer.status === 'rejected' && answer.reason instanceof ApiError && KEY_REFUSALS.has(answer.reason.apiCode))
  if (refusal?.status === 'rejected') view.agent_key_refused = (refusal.reason as ApiError).apiCode
  return {marketplace: view, stake}
}

function countBy(values: readonly string[], keys: readonly string[] = []): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(keys.map((key) => [key, 0]))
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1
  return counts
}

// ---- money ----

function moneyOf(stake: StakeInfo): Omit<MoneyView, 'usage_last_day'> {
  return {staked: stake.staked, tier: stake.tier, max_concurrent_contracts: stake.max_concurrent_contracts, rewards_pending: stake.rewards_pending}
}

/** What this host billed in the last 24 h, from its usage archive (one record per record_id). */
export function usageLastDay(stateDir: string, now: number): MoneyView['usage_last_day'] {
  const dir = join(stateDir, 'usage')
  const totals = {records: 0, contracts: 0, cpu_core_hours: 0, gpu_hours: 0}
  if (!existsSync(dir)) return totals
  const since = now - DAY_MS
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.jsonl')) continue
    const file = join(dir, name)
    // A file untouched for a day holds nothing of the last one.
    if (statSync(file).mtimeMs < since) continue
    const seen = new Set<string>()
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      if (line.trim() === '') continue
      let parsed
      try {
        parsed = SignedUsageRecordSchema.safeParse(JSON.parse(line))
      } catch {
        continue
      }
      if (!parsed.success || parsed.data.period_end < since || seen.has(parsed.data.record_id)) continue
      seen.add(parsed.data.record_id)
      totals.cpu_core_hours += parsed.data.cpu_core_seconds / 3600
      totals.gpu_hours += parsed.data.gpu_seconds / 3600
    }
    totals.records += seen.size
    if (seen.size > 0) totals.contracts++
  }
  totals.cpu_core_hours = Math.round(totals.cpu_core_hours * 1000) / 1000
  totals.gpu_hours = Math.round(totals.gpu_hours * 1000) / 1000
  return totals
}

// ---- what needs attention ----

const MAIN_KEY = '--main-key-file ~/provider-main.key'

const READINESS_REMEDIES: Record<string, string> = {
  starting: 'outpost status --watch 5',
  key_refused: `outpost keys rotate ${MAIN_KEY}`,
  marketplace_unreachable: 'outpost doctor',
  heartbeat_stale: 'outpost doctor',
  draining: 'outpost run',
  state_disk_full: 'df -h',
}

function attentionItems(report: StatusReport, stake: StakeInfo | undefined, now: number, agentKeyProblem: string | undefined): AttentionItem[] {
  const items: AttentionItem[] = []
  const {agent, marketplace} = report
  if (report.provider_pubkey === null) items.push({code: 'not_registered', message: 'this provider is not registered', command: `outpost register ${MAIN_KEY}`})
  if (!agent.running) {
    const waiting = agent.outbox_depth + agent.in_flight > 0 ? ` (${agent.outbox_depth} reports and ${agent.in_flight} contracts wait for it)` : ''
    items.push({code: 'agent_not_running', message: `the agent is not running${waiting}`, command: 'outpost run (or: sudo systemctl start outpost)'})
  }
  for (const reason of agent.not_ready_reasons) items.push({code: `agent_${reason.code}`, message: reason.message, command: READINESS_REMEDIES[reason.code] ?? 'outpost doctor'})
  if (report.provider_pubkey !== null && !marketplace.reachable) {
    items.push({code: 'marketplace_unreachable', message: `the marketplace could not be read: ${marketplace.error ?? 'no answer'}`, command: 'outpost doctor'})
  }
  if (agentKeyProblem) items.push({code: 'agent_key_unread', message: `the agent key could not be read, so its own reads were skipped: ${agentKeyProblem}`, command: 'outpost status --passphrase-file FILE'})
  if (marketplace.provider_status === 'paused') {
    items.push({code: 'provider_paused', message: `the provider is paused${marketplace.status_reason ? ` (${marketplace.status_reason})` : ''}: no new contracts`, command: `outpost provider resume ${MAIN_KEY}`})
  }
  const delegation = marketplace.delegation
  if (marketplace.agent_key_refused && !agent.not_ready_reasons.some((reason) => reason.code === 'key_refused')) {
    items.push({code: 'agent_key_refused', message: `the marketplace refuses the agent key (${marketplace.agent_key_refused})`, command: `outpost keys rotate ${MAIN_KEY}`})
  }
  if (delegation?.revoked_at != null) {
    items.push({code: 'delegation_revoked', message: 'the agent key’s delegation is revoked', command: `outpost keys rotate ${MAIN_KEY}`})
  } else if (delegation?.expires_at != null && delegation.expires_at - now < DELEGATION_WARN_MS) {
    const expired = delegation.expires_at <= now
    const days = Math.abs(delegation.expires_at - now) / DAY_MS
    const when = expired ? `expired ${new Date(delegation.expires_at).toISOString()}` : `expires in ${days < 1 ? `${Math.max(1, Math.round(days * 24))} h` : `${days.toFixed(1)} days`} (${new Date(delegation.expires_at).toISOString()})`
    items.push({code: expired ? 'delegation_expired' : 'delegation_expiring', message: `the agent key’s delegation ${when}`, command: `outpost keys rotate ${MAIN_KEY}`})
  }
  if (marketplace.tier_limited_contracts && stake) {
    const next = nextTier(parseAmount(stake.staked))
    const count = marketplace.tier_limited_contracts
    const lift = next ? `; staking ${formatAmount(next.minimumMicro - parseAmount(stake.staked))} more (tier ${next.name}) allows ${next.maxConcurrent ?? 'unlimited'}` : ''
    items.push({
      code: 'tier_limit',
      message: `${count} contract${count === 1 ? '' : 's'} wait${count === 1 ? 's' : ''} on the stake tier limit (${stake.tier}: ${stake.max_concurrent_contracts ?? 'no limit'} at once)${lift}`,
      command: `outpost stake deposit ${next ? formatAmount(next.minimumMicro - parseAmount(stake.staked)) : 'AMOUNT'} ${MAIN_KEY}`,
    })
  }
  if (stake && parseAmount(stake.rewards_pending) > 0n) {
    items.push({code: 'rewards_pending', message: `${stake.rewards_pending} in rewards can be claimed`, command: `outpost stake claim ${MAIN_KEY}`})
  }
  return items
}
