import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {ContractLocks} from '../../src/agent/contract-lock.js'
import {ApiError} from '../../src/core/api/api-error.js'
import {FakeMarketplace, RecordingLog, refusal, unreachable} from './fakes.js'

/** The contract lock on fake timers against a fake marketplace: acquire, keep (renew every TTL/3), release. */

beforeEach(() => vi.useFakeTimers())
afterEach(() => vi.useRealTimers())

const TTL_SECONDS = 90
const RENEW_MS = (TTL_SECONDS * 1000) / 3
const ID = 'ab'.repeat(16)

function harness() {
  const api = new FakeMarketplace()
  const log = new RecordingLog()
  const apiErrors: string[] = []
  const locks = new ContractLocks({
    api,
    ttlSeconds: TTL_SECONDS,
    log,
    onApiError: (error) => apiErrors.push(error instanceof ApiError ? error.apiCode : String(error)),
    retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1},
  })
  return {api, log, apiErrors, locks}
}

describe('ContractLocks.acquire', () => {
  it('holds the lock when the marketplace grants it', async () => {
    const {api, locks} = harness()
    expect(await locks.acquire(ID, new AbortController().signal)).toEqual({outcome: 'held'})
    expect(api.calls).toEqual([`lock ${ID}`])
  })

  it('is refused for good by a 4xx (another agent holds it), and the error is counted', async () => {
    const {api, apiErrors, locks} = harness()
    api.failNext('lock', refusal(409, 'locked'))
    const attempt = await locks.acquire(ID, new AbortController().signal)
    expect(attempt.outcome).toBe('refused')
    expect(attempt.outcome === 'refused' && attempt.error.apiCode).toBe('locked')
    expect(apiErrors).toEqual(['locked'])
  })

  it('is unreachable, not refused, when the marketplace did not answer or failed (retrying may help)', async () => {
    const {api, locks} = harness()
    api.failNext('lock', unreachable(), refusal(503, 'unavailable'))
    expect((await locks.acquire(ID, new AbortController().signal)).outcome).toBe('unreachable')
    expect((await locks.acquire(ID, new AbortController().signal)).outcome).toBe('unreachable')
  })
})

describe('ContractLocks.keep', () => {
  it('renews the lock every TTL/3 with the TTL, until stopped', async () => {
    const {api, locks} = harness()
    const kept = locks.keep(ID)
    await vi.advanceTimersByTimeAsync(RENEW_MS - 1)
    expect(api.callsOf('lock')).toHaveLength(0)
    await vi.advanceTimersByTimeAsync(1)
    expect(api.callsOf('lock')).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(2 * RENEW_MS)
    expect(api.callsOf('lock')).toHaveLength(3)
    kept.stop()
    await vi.advanceTimersByTimeAsync(10 * RENEW_MS)
    expect(api.callsOf('lock')).toHaveLength(3)
    expect(kept.lost.aborted).toBe(false)
  })

  it('keeps renewing through an outage: a failed renewal is not a lost lock', async () => {
    const {api, log, locks} = harness()
    api.failNext('lock', unreachable(), refusal(503, 'unavailable'))
    const kept = locks.keep(ID)
    await vi.advanceTimersByTimeAsync(3 * RENEW_MS)
    expect(api.callsOf('lock')).toHaveLength(3)
    expect(kept.lost.aborted).toBe(false)
    expect(log.lines.filter((line) => line.message.startsWith('could not renew'))).toHaveLength(2)
    kept.stop()
  })

  it('fires `lost` when a renewal answers 409: another agent has the contract now', async () => {
    const {api, locks} = harness()
    api.failNext('lock', refusal(409, 'locked'))
    const kept = locks.keep(ID)
    await vi.advanceTimersByTimeAsync(RENEW_MS)
    expect(kept.lost.aborted).toBe(true)
    expect(String(kept.lost.reason)).toContain('lock lost: locked')
    kept.stop()
  })
})

describe('ContractLocks.release', () => {
  it('unlocks, and a failure to unlock is only logged (the lock expires by itself)', async () => {
    const {api, apiErrors, log, locks} = harness()
    await locks.release(ID)
    api.failNext('unlock', refusal(500, 'internal'))
    await expect(locks.release(ID)).resolves.toBeUndefined()
    expect(api.callsOf('unlock')).toEqual([`unlock ${ID}`, `unlock ${ID}`])
    expect(apiErrors).toEqual(['internal'])
    expect(log.lines.map((line) => line.message)).toEqual(['could not release the lock (it expires by itself)'])
  })
})
