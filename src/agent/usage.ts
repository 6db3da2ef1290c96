import type {Contract} from '../core/api/schemas.js'
import {sha256Hex, signUsageRecord, type KeyPair, type SignedUsageRecord} from '../core/signing.js'

/** Usage is reported in fixed periods aligned to the interval, so the same period always gets the same record id. */
export interface UsagePeriod {
  /** The aligned start: the record id depends on it only. */
  alignedStart: number
  /** What is billed: the aligned period clipped to when the instance was running. */
  start: number
  end: number
}

/** A record id that is the same every time the agent (or a restarted one) reports this contract's period. */
export function usageRecordId(contractId: string, alignedStart: number, intervalMs: number): string {
  return sha256Hex(`outpost-usage-record\n${contractId}\n${alignedStart}\n${intervalMs}`).slice(0, 32)
}

/** The complete periods of `intervalMs` between `since` and `now` (at most `limit`, the latest ones), clipped to `runningFrom`. */
export function completedPeriods(options: {since: number; runningFrom: number; now: number; intervalMs: number; limit?: number}): UsagePeriod[] {
  const {intervalMs, now} = options
  const from = Math.max(options.since, options.runningFrom)
  const lastEnd = Math.floor(now / intervalMs) * intervalMs
  let alignedStart = Math.floor(from / intervalMs) * intervalMs
  const limit = options.limit ?? 288
  if ((lastEnd - alignedStart) / intervalMs > limit) alignedStart = lastEnd - limit * intervalMs
  const periods: UsagePeriod[] = []
  for (; alignedStart + intervalMs <= lastEnd; alignedStart += intervalMs) {
    const start = Math.max(alignedStart, from)
    const end = alignedStart + intervalMs
    if (end > start) periods.push({alignedStart, start, end})
  }
  return periods
}

/**
 * The periods of an instance that stopped at `end`: the complete ones, then the period `end` falls in, cut at `end`.
 * That last record keeps its period's id: nothing can report that period again once the contract has ended.
 */
export function periodsUntilEnd(options: {since: number; runningFrom: number; end: number; intervalMs: number; limit?: number}): UsagePeriod[] {
  const {end, intervalMs} = options
  const periods = completedPeriods({...options, now: end})
  const alignedStart = Math.floor(end / intervalMs) * intervalMs
  const start = Math.max(alignedStart, options.since, options.runningFrom)
  if (end > start) periods.push({alignedStart, start, end})
  return periods
}

/** The signed record of one period: resources are billed as allocated (cores × seconds, and so on). */
export function usageRecord(key: KeyPair, contract: Contract, period: UsagePeriod, intervalMs: number): SignedUsageRecord {
  const seconds = (period.end - period.start) / 1000
  return signUsageRecord(key, {
    record_id: usageRecordId(contract.contract_id, period.alignedStart, intervalMs),
    contract_id: contract.contract_id,
    period_start: period.start,
    period_end: period.end,
    cpu_core_seconds: contract.cpu_cores * seconds,
    memory_mb_seconds: contract.memory_mb * seconds,
    storage_gb_seconds: contract.storage_gb * seconds,
    gpu_seconds: contract.gpu_count * seconds,
  })
}
