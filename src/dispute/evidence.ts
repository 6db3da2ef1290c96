import {existsSync, readFileSync} from 'node:fs'
import {basename, dirname, resolve} from 'node:path'
import {z} from 'zod'

import {readContractRecord, type JournalEntry} from '../agent/contract-record.js'
import type {EvidenceItem} from '../core/api/disputes.js'
import {ExitCode, UserError} from '../core/errors.js'
import type {HealthCheck} from '../core/api/provider.js'
import {canonicalJson, sha256Hex, verifyUsageRecord, type SignedUsageRecord} from '../core/signing.js'

/** The reference marketplace takes at most this many evidence items in one submission (PROTOCOL §10 names no limit). */
export const MAX_EVIDENCE_ITEMS = 100

export interface EvidenceDraft {
  provider_response?: string
  evidence: EvidenceItem[]
  /** What could not be included, and why. */
  notes: string[]
}

const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 as 64 lowercase hex characters')

/** evidence.json: the protocol's fields, with `file` for an attachment whose SHA-256 is taken here. */
const EvidenceFile = z.strictObject({
  provider_response: z.string().min(1).optional(),
  evidence: z
    .array(
      z.strictObject({
        type: z.string().min(1).max(64),
        description: z.string().min(1).max(4096),
        file: z.string().min(1).optional(),
        hash: sha256.optional(),
        url: z.url().optional(),
        data: z.unknown().optional(),
      }),
    )
    .min(1, 'expected at least one evidence item')
    .max(MAX_EVIDENCE_ITEMS),
})

/**
 * Reads evidence.json. An item's hash is the SHA-256 of its `file` (relative to evidence.json), else of the canonical
 * JSON of its `data`, else the `hash` written in it; a written hash that disagrees with the file is refused.
 */
export function evidenceFromFile(path: string): EvidenceDraft {
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'))
  } catch (error) {
    throw new UserError(`cannot read ${path} as JSON: ${error instanceof Error ? error.message : String(error)}`, {code: 'evidence_file', exit: ExitCode.usage})
  }
  const parsed = EvidenceFile.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new UserError(`${path}: ${issue?.path.join('.') || 'file'}: ${issue?.message ?? 'invalid'}`, {
      code: 'evidence_file',
      exit: ExitCode.usage,
      suggestion: 'write {"provider_response": "...", "evidence": [{"type": "log", "description": "...", "file": "syslog.txt"}]}',
    })
  }
  const evidence = parsed.data.evidence.map((item, index): EvidenceItem => {
    const {file, hash, ...rest} = item
    let computed: string | undefined
    let data = rest.data
    if (file !== undefined) {
      const attachment = resolve(dirname(path), file)
      if (!existsSync(attachment)) throw new UserError(`evidence[${index}]: no file ${attachment}`, {code: 'evidence_file', exit: ExitCode.usage})
      const bytes = readFileSync(attachment)
      computed = sha256Hex(bytes)
      data = {...(isRecord(rest.data) ? rest.data : {}), file: basename(attachment), size_bytes: bytes.length}
    } else if (rest.data !== undefined) {
      computed = sha256Hex(canonicalJson(rest.data))
    }
    if (computed && hash && computed !== hash) {
      throw new UserError(`evidence[${index}]: the hash written (${hash}) is not the SHA-256 of its ${file ? 'file' : 'data'} (${computed})`, {code: 'evidence_hash', exit: ExitCode.usage})
    }
    const finalHash = computed ?? hash
    if (!finalHash) throw new UserError(`evidence[${index}]: give a file, data or a hash`, {code: 'evidence_file', exit: ExitCode.usage})
    return {type: rest.type, description: rest.description, hash: finalHash, ...(rest.url ? {url: rest.url} : {}), ...(data !== undefined ? {data} : {})}
  })
  return {provider_response: parsed.data.provider_response, evidence, notes: []}
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function describeEvent(event: JournalEntry): string {
  const at = new Date(event.at).toISOString()
  switch (event.event) {
    case 'provision_started':
      return `${at}: the agent started provisioning the contract (its terms as received)`
    case 'instance_ready':
      return `${at}: instance ${event.external_id} ready${event.adopted ? ' (found after a restart)' : ''}`
    case 'contract_done':
      return `${at}: provisioning ${event.outcome}${event.reason ? `: ${event.reason}` : ''}`
    case 'report_queued':
      return `${at}: ${event.kind} report queued${event.status ? ` (${event.status})` : ''}`
    case 'report_delivered':
      return `${at}: ${event.kind} report accepted by the marketplace${event.status ? ` (${event.status})` : ''}`
    case 'report_rejected':
      return `${at}: ${event.kind} report refused by the marketplace: ${event.reason}`
    case 'instance_terminated':
      return `${at}: instance ${event.external_id} terminated: ${event.reason}`
    default:
      return `${at}: ${event.event}`
  }
}

function usageDescription(records: readonly SignedUsageRecord[]): string {
  const first = records[0]
  const last = records.at(-1)
  const cpu = records.reduce((sum, record) => sum + record.cpu_core_seconds, 0)
  const span = first && last ? `${new Date(first.period_start).toISOString()} to ${new Date(last.period_end).toISOString()}` : ''
  return records.length === 1
    ? `signed usage record ${first?.record_id ?? ''}: ${span}, ${cpu} CPU core-seconds; verify: Ed25519 by signer over "outpost-usage-v1\\n" + canonical JSON without signature`
    : `${records.length} signed usage records, ${span}, ${cpu} CPU core-seconds in all; each verifies on its own (PROTOCOL §7)`
}

/**
 * `--auto`: the agent's own record of the contract, from its state dir: every signed usage record it queued (the
 * archive, and the outbox for records not yet accepted), and its journal entries about the contract (provisioning,
 * reports, termination). Each item's hash is the SHA-256 of the canonical JSON of its data.
 */
export function evidenceFromAgentState(stateDir: string, contractId: string): EvidenceDraft {
  const notes: string[] = []
  const {events, usageRecords, healthChecks, skippedJournalLines, skippedUsageLines, skippedHealthLines} = readContractRecord(stateDir, contractId)
  if (skippedJournalLines > 0) notes.push(`${skippedJournalLines} journal line(s) did not parse and were left out`)
  if (skippedUsageLines > 0) notes.push(`${skippedUsageLines} archived usage line(s) did not parse and were left out`)
  if (skippedHealthLines > 0) notes.push(`${skippedHealthLines} archived health line(s) did not parse and were left out`)
  const verified = usageRecords.filter(verifyUsageRecord).sort((a, b) => a.period_start - b.period_start)
  if (verified.length < usageRecords.length) notes.push(`${usageRecords.length - verified.length} usage record(s) whose signature does not verify were left out`)
  if (events.length === 0 && verified.length === 0 && healthChecks.length === 0) {
    throw new UserError(`the agent's state dir ${stateDir} holds nothing about contract ${contractId}`, {
      code: 'no_evidence',
      suggestion: 'run this on the host whose agent served the contract (its [agent] state_dir), or use --file',
    })
  }

  const evidence: EvidenceItem[] = []
  const eventItems = events.slice(-Math.floor(MAX_EVIDENCE_ITEMS / 2))
  if (eventItems.length < events.length) notes.push(`only the last ${eventItems.length} of ${events.length} journal entries fit`)
  for (const event of eventItems) {
    evidence.push({type: 'agent_journal_entry', description: describeEvent(event), hash: sha256Hex(canonicalJson(event)), data: event})
  }
  if (healthChecks.length > 0) {
    const data = healthSummary(contractId, healthChecks)
    evidence.push({type: 'health_checks', description: healthDescription(data), hash: sha256Hex(canonicalJson(data)), data})
  } else {
    notes.push('no health checks for this contract in the state dir (archived since this version, and pruned after [agent] archive_days)')
  }
  // One item per record while they fit in the item limit, else consecutive records grouped evenly.
  const perItem = Math.max(1, Math.ceil(verified.length / (MAX_EVIDENCE_ITEMS - evidence.length)))
  for (let start = 0; start < verified.length; start += perItem) {
    const group = verified.slice(start, start + perItem)
    const data = perItem === 1 ? group[0] : {records: group}
    evidence.push({type: perItem === 1 ? 'usage_record' : 'usage_records', description: usageDescription(group), hash: sha256Hex(canonicalJson(data)), data})
  }
  if (verified.length === 0) notes.push('no signed usage records for this contract in the state dir')
  const uptime = healthChecks.length > 0 ? `, ${healthChecks.length} health check(s)` : ''
  const response = `Evidence from the provider agent's own records for contract ${contractId}: ${verified.length} signed usage record(s)${uptime} and ${eventItems.length} journal entries.`
  return {provider_response: response, evidence, notes}
}

/** Checks listed one by one in the summary: those that were not healthy, the most recent first to be cut. */
const MAX_LISTED_CHECKS = 200

export interface HealthSummary {
  contract_id: string
  checks: number
  first_checked_at: number
  last_checked_at: number
  by_status: Record<HealthCheck['status'], number>
  /** Healthy checks over all checks, 0–1. */
  healthy_ratio: number
  /** The longest time between two checks: the span the checks say nothing about. */
  longest_gap_seconds: number
  days: {day: string; checks: number; healthy: number}[]
  not_healthy: HealthCheck[]
  /** SHA-256 of the canonical JSON of every check, in order: the archive file proves the summary later. */
  checks_sha256: string
}

/** One evidence item for a contract's health archive: a summary of uptime, every check's hash, the checks that failed. */
export function healthSummary(contractId: string, checks: readonly HealthCheck[]): HealthSummary {
  const byStatus = {healthy: 0, unhealthy: 0, unknown: 0}
  const days = new Map<string, {checks: number; healthy: number}>()
  let longestGap = 0
  checks.forEach((check, index) => {
    byStatus[check.status]++
    const day = new Date(check.checked_at).toISOString().slice(0, 10)
    const entry = days.get(day) ?? {checks: 0, healthy: 0}
    entry.checks++
    if (check.status === 'healthy') entry.healthy++
    days.set(day, entry)
    const previous = checks[index - 1]
    if (previous) longestGap = Math.max(longestGap, check.checked_at - previous.checked_at)
  })
  const notHealthy = checks.filter((check) => check.status !== 'healthy')
  return {
    contract_id: contractId,
    checks: checks.length,
    first_checked_at: checks[0]?.checked_at ?? 0,
    last_checked_at: checks.at(-1)?.checked_at ?? 0,
    by_status: byStatus,
    healthy_ratio: checks.length === 0 ? 0 : Math.round((byStatus.healthy / checks.length) * 10_000) / 10_000,
    longest_gap_seconds: Math.round(longestGap / 1000),
    days: [...days].map(([day, entry]) => ({day, ...entry})),
    not_healthy: notHealthy.slice(0, MAX_LISTED_CHECKS),
    checks_sha256: sha256Hex(canonicalJson(checks)),
  }
}

function healthDescription(summary: HealthSummary): string {
  const span = `${new Date(summary.first_checked_at).toISOString()} to ${new Date(summary.last_checked_at).toISOString()}`
  const percent = (summary.healthy_ratio * 100).toFixed(2)
  return `${summary.checks} health checks of the instance by the agent, ${span}: ${percent}% healthy (${summary.by_status.unhealthy} unhealthy, ${summary.by_status.unknown} unknown), longest gap between checks ${summary.longest_gap_seconds} s; checks_sha256 hashes every check in the agent's archive`
}

/** Both sources at once: file items first, then the agent's. */
export function mergeDrafts(drafts: readonly EvidenceDraft[]): EvidenceDraft {
  const evidence = drafts.flatMap((draft) => draft.evidence)
  if (evidence.length > MAX_EVIDENCE_ITEMS) {
    throw new UserError(`${evidence.length} evidence items: the marketplace takes at most ${MAX_EVIDENCE_ITEMS} at once`, {code: 'too_much_evidence', suggestion: 'submit --file and --auto separately'})
  }
  return {
    provider_response: drafts.map((draft) => draft.provider_response).find((response) => response !== undefined),
    evidence,
    notes: drafts.flatMap((draft) => draft.notes),
  }
}
