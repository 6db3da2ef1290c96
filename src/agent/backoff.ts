import {setTimeout as sleep} from 'node:timers/promises'

import {backoffDelay, type RetryPolicy} from '../core/api/client.js'

export type BackoffPolicy = Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>

/** The daemon's loops wait this long between failed rounds: an outage slows them down, it never stops them. */
export const LOOP_BACKOFF: BackoffPolicy = {baseDelayMs: 250, maxDelayMs: 8000}

/** Capped exponential backoff with jitter, as a counter: next() after each failure, reset() after a success. */
export class Backoff {
  private attempt = 0

  constructor(
    private readonly policy: BackoffPolicy = LOOP_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  get failures(): number {
    return this.attempt
  }

  next(): number {
    // The exponent is capped so a long outage can't overflow it; the delay is capped by maxDelayMs anyway.
    const delay = backoffDelay(Math.min(this.attempt, 30), {...this.policy, retries: 0}, this.random)
    this.attempt++
    return delay
  }

  reset(): void {
    this.attempt = 0
  }
}

/** Waits `ms`, or less when `signal` fires; never rejects. */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return
  await sleep(ms, undefined, {signal}).catch(() => undefined)
}

/**
 * A signal that aborts with `signal` without adding a listener to it: for the many requests at once (locks, state reads)
 * that wait on one of the agent's long-lived signals.
 */
export function follow(signal: AbortSignal): AbortSignal {
  return AbortSignal.any([signal])
}

/** Callbacks waiting on each signal, behind one listener: many contracts wait on the agent's shutdown at once. */
const waiting = new WeakMap<AbortSignal, {callbacks: Set<() => void>; listener: () => void}>()

function onAbort(signal: AbortSignal, callback: () => void): () => void {
  let entry = waiting.get(signal)
  if (!entry) {
    const callbacks = new Set<() => void>()
    const listener = () => {
      waiting.delete(signal)
      for (const waiter of callbacks) waiter()
      callbacks.clear()
    }
    entry = {callbacks, listener}
    waiting.set(signal, entry)
    signal.addEventListener('abort', listener, {once: true})
  }
  const own = entry
  own.callbacks.add(callback)
  return () => {
    own.callbacks.delete(callback)
    // The last wait gone, the listener goes too: Node keeps a signal made by AbortSignal.any (one per contract) alive
    // for as long as it has an abort listener, which was one contract's signals kept for good (the soak's 45 MiB/h).
    if (own.callbacks.size === 0 && waiting.get(signal) === own) {
      signal.removeEventListener('abort', own.listener)
      waiting.delete(signal)
    }
  }
}

/**
 * What `work` settles with, or undefined as soon as `signal` fires. Waiting adds no listener of its own to the signal
 * (one listener serves every wait on it) and leaves nothing behind once either happens: the agent's long-lived signals
 * would otherwise gather one listener per contract waiting (Node warns after 10, into the JSON log).
 */
export function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined)
  return new Promise<T | undefined>((resolve, reject) => {
    const forget = onAbort(signal, () => resolve(undefined))
    work.then(
      (value) => {
        forget()
        resolve(value)
      },
      (error: unknown) => {
        forget()
        reject(error instanceof Error ? error : new Error(String(error)))
      },
    )
  })
}
