/** Why the agent can't do its job now: a stable code and a sentence for the operator. */
export interface NotReadyReason {
  code: 'starting' | 'marketplace_unreachable' | 'heartbeat_stale' | 'key_refused' | 'draining' | 'state_disk_full'
  message: string
}

/** What /readyz answers (as JSON, 200 when `ready`, else 503) and `outpost status` reads. */
export interface Readiness {
  ready: boolean
  reasons: NotReadyReason[]
  /** §5: `draining` once the agent was asked to stop: it takes no new work and finishes what runs. */
  status: 'active' | 'draining'
  version: string
  agent_id: string
  pid: number
  last_heartbeat_acknowledged_at: number | null
  heartbeat_interval_seconds: number
  outbox_depth: number
  /** Contracts being provisioned or terminated now. */
  in_flight: number
  active_contracts: number
  /** Accepted contracts the marketplace holds back for the stake tier, as it last said (null: it never said). */
  tier_limited_contracts: number | null
}

/** What the agent knows of itself, for judging readiness. */
export interface ReadinessFacts {
  now: number
  /** The previous run's leftovers were taken up. */
  resumed: boolean
  lastAcknowledgedAt: number | undefined
  heartbeatIntervalMs: number
  /** A request failed with no answer or a server error, and none of the heartbeat or the contract poll has worked since. */
  unreachable: {since: number; message: string} | undefined
  /** The marketplace refused the agent key (expired or revoked delegation, unknown key) and has not accepted it since. */
  refusal: {code: string; message: string} | undefined
  draining: boolean
  diskFull: boolean
}

/** A heartbeat acknowledged longer ago than this many intervals is stale: the marketplace will soon call the agent offline. */
export const STALE_AFTER_INTERVALS = 3

/** Ready means the agent can do its job now: the marketplace answers, accepts its key and has heard it lately, and it takes work. */
export function judgeReadiness(facts: ReadinessFacts): {ready: boolean; reasons: NotReadyReason[]} {
  const reasons: NotReadyReason[] = []
  if (!facts.resumed || facts.lastAcknowledgedAt === undefined) {
    reasons.push({code: 'starting', message: 'no heartbeat acknowledged yet, or the previous run’s work is not taken up yet'})
  }
  if (facts.refusal) {
    reasons.push({code: 'key_refused', message: `the marketplace refuses the agent key (${facts.refusal.code}): ${facts.refusal.message}`})
  }
  if (facts.unreachable) {
    const seconds = Math.round((facts.now - facts.unreachable.since) / 1000)
    reasons.push({code: 'marketplace_unreachable', message: `the marketplace has not answered for ${seconds} s: ${facts.unreachable.message}`})
  }
  if (facts.lastAcknowledgedAt !== undefined && facts.now - facts.lastAcknowledgedAt > STALE_AFTER_INTERVALS * facts.heartbeatIntervalMs) {
    const seconds = Math.round((facts.now - facts.lastAcknowledgedAt) / 1000)
    reasons.push({code: 'heartbeat_stale', message: `the last heartbeat acknowledged is ${seconds} s old (more than ${STALE_AFTER_INTERVALS} intervals)`})
  }
  if (facts.draining) reasons.push({code: 'draining', message: 'draining: no new work is taken; what runs is finished, then the agent stops'})
  if (facts.diskFull) reasons.push({code: 'state_disk_full', message: 'the state disk is full: no new work is taken until there is room'})
  return {ready: reasons.length === 0, reasons}
}
