import {describe, expect, it} from 'vitest'

import {completedPeriods, periodsUntilEnd, usageRecord, usageRecordId} from '../../src/agent/usage.js'
import {generateKeyPair, verifyUsageRecord} from '../../src/core/signing.js'
import {contractFixture} from '../provisioners/contract-suite.js'

const MINUTE = 60_000

describe('usage records', () => {
  it('have ids that depend on the contract and the period only, so a resend is a duplicate', () => {
    const id = usageRecordId('c1', 10 * MINUTE, 5 * MINUTE)
    expect(usageRecordId('c1', 10 * MINUTE, 5 * MINUTE)).toBe(id)
    expect(usageRecordId('c2', 10 * MINUTE, 5 * MINUTE)).not.toBe(id)
    expect(usageRecordId('c1', 15 * MINUTE, 5 * MINUTE)).not.toBe(id)
    expect(id).toMatch(/^[0-9a-f]{32}$/)
  })

  it('cover the complete aligned periods since the last report, the first clipped to when the instance started', () => {
    const periods = completedPeriods({since: 0, runningFrom: 7 * MINUTE, now: 21 * MINUTE, intervalMs: 5 * MINUTE})
    expect(periods).toEqual([
      {alignedStart: 5 * MINUTE, start: 7 * MINUTE, end: 10 * MINUTE},
      {alignedStart: 10 * MINUTE, start: 10 * MINUTE, end: 15 * MINUTE},
      {alignedStart: 15 * MINUTE, start: 15 * MINUTE, end: 20 * MINUTE},
    ])
    expect(completedPeriods({since: 20 * MINUTE, runningFrom: 7 * MINUTE, now: 24 * MINUTE, intervalMs: 5 * MINUTE})).toEqual([])
    expect(completedPeriods({since: 0, runningFrom: 0, now: 1000 * MINUTE, intervalMs: MINUTE, limit: 3})).toHaveLength(3)
  })

  it('of an instance that stopped, end with the period it stopped in, cut at that moment, under its own id', () => {
    const periods = periodsUntilEnd({since: 10 * MINUTE, runningFrom: 7 * MINUTE, end: 23 * MINUTE, intervalMs: 5 * MINUTE})
    expect(periods).toEqual([
      {alignedStart: 10 * MINUTE, start: 10 * MINUTE, end: 15 * MINUTE},
      {alignedStart: 15 * MINUTE, start: 15 * MINUTE, end: 20 * MINUTE},
      {alignedStart: 20 * MINUTE, start: 20 * MINUTE, end: 23 * MINUTE},
    ])
    // Stopped in the period it started in, and stopped right on a period's end: nothing is billed twice or left out.
    expect(periodsUntilEnd({since: 0, runningFrom: 7 * MINUTE, end: 9 * MINUTE, intervalMs: 5 * MINUTE})).toEqual([{alignedStart: 5 * MINUTE, start: 7 * MINUTE, end: 9 * MINUTE}])
    expect(periodsUntilEnd({since: 0, runningFrom: 7 * MINUTE, end: 15 * MINUTE, intervalMs: 5 * MINUTE}).at(-1)).toEqual({alignedStart: 10 * MINUTE, start: 10 * MINUTE, end: 15 * MINUTE})
    expect(periodsUntilEnd({since: 15 * MINUTE, runningFrom: 7 * MINUTE, end: 15 * MINUTE, intervalMs: 5 * MINUTE})).toEqual([])
  })

  it('bill the allocation for the period and verify on their own', () => {
    const key = generateKeyPair()
    const contract = contractFixture({cpu_cores: 2, memory_mb: 1024, storage_gb: 10, gpu_count: 1})
    const record = usageRecord(key, contract, {alignedStart: 0, start: 30_000, end: 60_000}, MINUTE)
    expect(record).toMatchObject({cpu_core_seconds: 60, memory_mb_seconds: 30_720, storage_gb_seconds: 300, gpu_seconds: 30, period_start: 30_000, period_end: 60_000})
    expect(verifyUsageRecord(record)).toBe(true)
    expect(verifyUsageRecord({...record, cpu_core_seconds: 61})).toBe(false)
  })
})
