import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {pollUntil, PollTimeoutError, type PollOptions} from '../../src/provisioners/poll.js'

/**
 * The polling schedule on a fake clock: how long after a backend step finishes the poll notices it. Time to ready on
 * a real (emulated) Proxmox host is measured by `npm run bench`, not here.
 */

// Fake timers replace the global setTimeout, not node:timers/promises: route the poll's sleep through the global one.
vi.mock('node:timers/promises', () => ({
  setTimeout: (ms: number, value: unknown, options?: {signal?: AbortSignal}) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve(value), ms)
      options?.signal?.addEventListener('abort', () => (clearTimeout(timer), reject(options.signal?.reason)), {once: true})
    }),
}))

beforeEach(() => vi.useFakeTimers())
afterEach(() => vi.useRealTimers())

/** Moves the fake clock forward in small ticks until `promise` settles (its timers are set from microtasks). */
async function settle<T>(promise: Promise<T>): Promise<T> {
  let done = false
  const watched = promise.finally(() => (done = true))
  // Its rejection is the caller's to check once the clock has moved; until then it is not unhandled.
  watched.catch(() => undefined)
  while (!done) await vi.advanceTimersByTimeAsync(10)
  return watched
}

/** Runs steps of the given durations one after another, each awaited by a poll; returns the fake time they took. */
async function stepsNoticedAfter(stepsMs: number[], options: Partial<PollOptions> = {}): Promise<{elapsedMs: number; checks: number}> {
  const started = Date.now()
  let checks = 0
  const run = (async () => {
    for (const stepMs of stepsMs) {
      const stepStarted = Date.now()
      await pollUntil(async () => (checks++, Date.now() - stepStarted >= stepMs ? true : undefined), {what: 'step', timeoutMs: 60_000, ...options})
    }
  })()
  await settle(run)
  return {elapsedMs: Date.now() - started, checks}
}

describe('pollUntil', () => {
  it('notices Proxmox-like steps (clone 2 s, start 1 s, address 3 s) within 10% of their 6 s', async () => {
    const {elapsedMs} = await stepsNoticedAfter([2000, 1000, 3000])
    expect(elapsedMs).toBeGreaterThanOrEqual(6000)
    expect(elapsedMs).toBeLessThanOrEqual(6600)
  })

  it('where a fixed 5 s poll, as in the peers, adds seconds', async () => {
    const {elapsedMs} = await stepsNoticedAfter([2000, 1000, 3000], {initialMs: 5000, maxMs: 5000})
    expect(elapsedMs).toBeGreaterThan(9000)
  })

  it('grows its interval for a long step, up to 2 s', async () => {
    const {elapsedMs, checks} = await stepsNoticedAfter([60_000 - 1])
    expect(elapsedMs - 60_000).toBeLessThanOrEqual(2000)
    // A fixed 250 ms poll would ask 240 times.
    expect(checks).toBeLessThan(60)
  })

  it('ends with a PollTimeoutError that says what was awaited', async () => {
    const waiting = pollUntil(async () => undefined, {what: 'clone of VM 105', timeoutMs: 3000})
    await expect(settle(waiting)).rejects.toThrow(new PollTimeoutError('clone of VM 105', 3000).message)
  })
})
