import Database from 'better-sqlite3'
import {join} from 'node:path'

import {readOutbox} from '../../src/agent/outbox.js'
import {DATABASE_FILE_NAME} from '../../src/marketplace/database.js'
import {instanceProcesses, waitFor} from './marketplace.js'

/**
 * What an end-to-end run of the agent must leave, read from the devnet's own database (the marketplace's truth) and
 * from /proc (the machines): the invariants every fault test checks.
 *
 * - each contract not cancelled is provisioned or active, with exactly one live instance;
 * - each cancelled one is `terminated` on the marketplace, with no live instance;
 * - every agent's outbox is empty;
 * - billed seconds cover provisioned seconds: the usage records of each contract cover, without a gap, the time from
 *   its `provisioned` report being accepted to its end (the cancellation).
 */

interface ContractRow {
  contract_id: string
  status: string
  termination_pending: number
  provisioned_at: number | null
  ended_at: number | null
}

interface Period {
  start: number
  end: number
}

export interface MarketplaceState {
  contracts: Map<string, ContractRow>
  /** Usage periods by contract, one per record id, sorted. */
  usage: Map<string, Period[]>
}

/** The devnet's contracts and usage records, read from its SQLite file (read-only, beside the running server). */
export function readMarketplace(dataDir: string): MarketplaceState {
  const db = new Database(join(dataDir, DATABASE_FILE_NAME), {readonly: true, fileMustExist: true})
  try {
    const contracts = new Map<string, ContractRow>()
    for (const row of db.prepare<[], ContractRow>('SELECT contract_id, status, termination_pending, provisioned_at, ended_at FROM contracts').all()) {
      contracts.set(row.contract_id, row)
    }
    const usage = new Map<string, Period[]>()
    for (const {contract_id, record} of db.prepare<[], {contract_id: string; record: string}>('SELECT contract_id, record FROM usage_records').all()) {
      const parsed = JSON.parse(record) as {period_start: number; period_end: number}
      usage.set(contract_id, [...(usage.get(contract_id) ?? []), {start: parsed.period_start, end: parsed.period_end}])
    }
    for (const periods of usage.values()) periods.sort((a, b) => a.start - b.start)
    return {contracts, usage}
  } finally {
    db.close()
  }
}

const RUNNING = new Set(['provisioned', 'active'])

/** Violations of "running ones have one live instance, cancelled ones are terminated with none"; empty when it holds. */
export function runningViolations(dataDir: string, ids: readonly string[], cancelled: ReadonlySet<string>): string[] {
  const {contracts} = readMarketplace(dataDir)
  const processes = instanceProcesses(ids)
  const violations: string[] = []
  for (const id of ids) {
    const row = contracts.get(id)
    const live = processes.get(id)?.length ?? 0
    if (cancelled.has(id)) {
      if (row?.status !== 'terminated') violations.push(`${id}: cancelled, and ${row?.status ?? 'missing'} on the marketplace, not terminated`)
      if (live !== 0) violations.push(`${id}: cancelled, and ${live} live instances`)
    } else {
      if (!row || !RUNNING.has(row.status)) violations.push(`${id}: ${row?.status ?? 'missing'} on the marketplace, not provisioned`)
      if (live !== 1) violations.push(`${id}: ${live} live instances, not 1`)
    }
  }
  return violations
}

/** Waits until the running invariants hold; returns the violations left when `timeoutMs` ran out. */
export async function settleRunning(dataDir: string, ids: readonly string[], cancelled: ReadonlySet<string>, timeoutMs: number): Promise<string[]> {
  let violations: string[] = []
  await waitFor(() => (violations = runningViolations(dataDir, ids, cancelled)).length === 0, timeoutMs, 300)
  return violations
}

/** The ids of the reports waiting in a state dir's outbox. */
export function outboxEntries(stateDir: string): string[] {
  return readOutbox(stateDir).map((entry) => entry.id)
}

export interface Billing {
  provisionedSeconds: number
  billedSeconds: number
  /** Billed before the marketplace took the `provisioned` report (the instance was ready, the report on its way). */
  billedBeforeProvisionedSeconds: number
  /** Billed after the contract ended (its instance still ran until the agent terminated it). */
  billedAfterEndSeconds: number
  /** Contracts whose usage leaves part of their provisioned time unbilled, with the first gap. */
  gaps: string[]
}

/**
 * For ended contracts: the seconds each was provisioned (from its accepted `provisioned` report to its end) and the
 * seconds its usage records bill, and any provisioned time no record covers.
 */
export function billing(dataDir: string, ids: readonly string[]): Billing {
  const {contracts, usage} = readMarketplace(dataDir)
  const result: Billing = {provisionedSeconds: 0, billedSeconds: 0, billedBeforeProvisionedSeconds: 0, billedAfterEndSeconds: 0, gaps: []}
  for (const id of ids) {
    const row = contracts.get(id)
    const periods = usage.get(id) ?? []
    result.billedSeconds += periods.reduce((sum, period) => sum + (period.end - period.start), 0) / 1000
    if (!row || row.provisioned_at === null) continue
    const end = row.ended_at ?? Date.now()
    const provisionedAt = row.provisioned_at
    result.provisionedSeconds += (end - provisionedAt) / 1000
    for (const period of periods) {
      result.billedBeforeProvisionedSeconds += Math.max(0, Math.min(period.end, provisionedAt) - period.start) / 1000
      result.billedAfterEndSeconds += Math.max(0, period.end - Math.max(period.start, end)) / 1000
    }
    let coveredUntil = row.provisioned_at
    for (const period of periods) {
      if (period.start > coveredUntil) break
      coveredUntil = Math.max(coveredUntil, period.end)
    }
    if (coveredUntil < end) result.gaps.push(`${id}: provisioned ${row.provisioned_at}–${end}, billed up to ${coveredUntil} (${periods.length} records)`)
  }
  for (const key of ['provisionedSeconds', 'billedSeconds', 'billedBeforeProvisionedSeconds', 'billedAfterEndSeconds'] as const) result[key] = Math.round(result[key])
  return result
}

/** One number from an agent's /metrics (the first sample of `name`). */
export async function metricValue(metricsUrl: string, name: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text()
  return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)`, 'm').exec(text)?.[1] ?? Number.NaN)
}
