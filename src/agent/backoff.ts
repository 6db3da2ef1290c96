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
 * What `work` settles with, or undefined as soon as `signal` fires. The abort listener is removed once either happens:
 * the agent's long-lived signals would otherwise gather one listener per call (Node warns after 10).
 */
export function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined)
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = () => resolve(undefined)
    signal.addEventListener('abort', onAbort, {once: true})
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error instanceof Error ? error : new Error(String(error)))
      },
    )
  })
}
