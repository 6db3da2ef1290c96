import {getEventListeners} from 'node:events'
import {describe, expect, it} from 'vitest'

import {Backoff, pause, unlessAborted} from '../../src/agent/backoff.js'

describe('Backoff', () => {
  it('doubles from the base up to the cap, with jitter in the upper half', () => {
    const low = new Backoff({baseDelayMs: 100, maxDelayMs: 1000}, () => 0)
    const high = new Backoff({baseDelayMs: 100, maxDelayMs: 1000}, () => 1)
    expect(Array.from({length: 6}, () => low.next())).toEqual([50, 100, 200, 400, 500, 500])
    expect(Array.from({length: 6}, () => high.next())).toEqual([100, 200, 400, 800, 1000, 1000])
  })

  it('never overflows or exceeds the cap in a long outage, and starts over after a success', () => {
    const backoff = new Backoff({baseDelayMs: 250, maxDelayMs: 8000})
    for (let failure = 0; failure < 10_000; failure++) {
      const delay = backoff.next()
      expect(delay).toBeGreaterThanOrEqual(125)
      expect(delay).toBeLessThanOrEqual(8000)
    }
    expect(backoff.failures).toBe(10_000)
    backoff.reset()
    expect(backoff.failures).toBe(0)
    expect(backoff.next()).toBeLessThanOrEqual(250)
  })

  it('spreads retries of many agents (jitter)', () => {
    const delays = new Set(Array.from({length: 50}, () => new Backoff({baseDelayMs: 1000, maxDelayMs: 1000}).next()))
    expect(delays.size).toBeGreaterThan(10)
  })

  it('pause ends early when its signal fires, and never rejects', async () => {
    const controller = new AbortController()
    const started = Date.now()
    setTimeout(() => controller.abort(), 20)
    await pause(10_000, controller.signal)
    expect(Date.now() - started).toBeLessThan(1000)
  })
})

describe('unlessAborted', () => {
  it('adds one listener to a long-lived signal however many wait on it, at once or one after another', async () => {
    const shutdown = new AbortController()
    for (let index = 0; index < 20; index++) expect(await unlessAborted(Promise.resolve(index), shutdown.signal)).toBe(index)
    await expect(unlessAborted(Promise.reject(new Error('failed')), shutdown.signal)).rejects.toThrow('failed')
    const held = Array.from({length: 20}, () => unlessAborted(new Promise<never>(() => undefined), shutdown.signal))
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(1)
    shutdown.abort()
    expect(await Promise.all(held)).toEqual(Array.from({length: 20}, () => undefined))
  })

  it('leaves no listener once the work settles: Node keeps an AbortSignal.any signal alive while it has one', async () => {
    const shutdown = new AbortController()
    const perContract = AbortSignal.any([shutdown.signal, new AbortController().signal])
    const held = unlessAborted(new Promise<never>(() => undefined), perContract)
    expect(getEventListeners(perContract, 'abort')).toHaveLength(1)
    expect(await unlessAborted(Promise.resolve('done'), perContract)).toBe('done')
    expect(getEventListeners(perContract, 'abort')).toHaveLength(1)
    shutdown.abort()
    expect(await held).toBeUndefined()
    const next = AbortSignal.any([new AbortController().signal])
    expect(await unlessAborted(Promise.resolve(1), next)).toBe(1)
    await expect(unlessAborted(Promise.reject(new Error('failed')), next)).rejects.toThrow('failed')
    expect(getEventListeners(next, 'abort')).toHaveLength(0)
    // A new wait after the last one left adds the listener again, and it still works.
    const again = new AbortController()
    expect(await unlessAborted(Promise.resolve(2), again.signal)).toBe(2)
    const waits = unlessAborted(new Promise<never>(() => undefined), again.signal)
    again.abort()
    expect(await waits).toBeUndefined()
    expect(getEventListeners(again.signal, 'abort')).toHaveLength(0)
  })

  it('resolves undefined as soon as the signal fires, whatever the work does', async () => {
    const shutdown = new AbortController()
    const pending = unlessAborted(new Promise<string>(() => undefined), shutdown.signal)
    shutdown.abort()
    expect(await pending).toBeUndefined()
    expect(await unlessAborted(Promise.resolve('late'), shutdown.signal)).toBeUndefined()
  })
})
