import {setTimeout as sleep} from 'node:timers/promises'

import {ProvisionAbortedError} from './provisioner.js'

export interface PollOptions {
  /** What is awaited, for error messages: "clone of VM 105". */
  what: string
  /** Infinity: as long as it takes (only the signal ends the wait). */
  timeoutMs: number
  signal?: AbortSignal
  initialMs?: number
  maxMs?: number
}

/** The wait ran out; the caller turns it into a ProvisionError that says what was awaited and for how long. */
export class PollTimeoutError extends Error {
  /** The step may finish given more time: another attempt can succeed. */
  readonly retryable = true

  constructor(readonly what: string, readonly timeoutMs: number, readonly lastError?: unknown) {
    super(`${what} did not finish within ${Math.round(timeoutMs / 1000)} s`, {cause: lastError})
    this.name = 'PollTimeoutError'
  }
}

/**
 * Calls `check` until it returns a value. The interval starts at 250 ms and grows to 2 s, so a step that takes 1 s is
 * seen within about 250 ms of finishing, while a long one costs few requests (a fixed 5 s poll adds seconds to every
 * step). `check` returns undefined for "not yet"; what it throws ends the wait.
 */
export async function pollUntil<T>(check: () => Promise<T | undefined>, options: PollOptions): Promise<T> {
  const started = Date.now()
  const deadline = started + options.timeoutMs
  let interval = options.initialMs ?? 250
  const maxInterval = options.maxMs ?? 2000
  for (;;) {
    if (options.signal?.aborted) throw new ProvisionAbortedError(options.what, {cause: options.signal.reason})
    const value = await check()
    if (value !== undefined) return value
    const left = deadline - Date.now()
    if (left <= 0) throw new PollTimeoutError(options.what, options.timeoutMs)
    try {
      await sleep(Math.min(interval, left), undefined, {signal: options.signal})
    } catch (error) {
      throw new ProvisionAbortedError(options.what, {cause: error})
    }
    // Growing with the time already waited keeps the overshoot near a tenth of the step's own duration.
    interval = Math.min(maxInterval, Math.max(interval, Math.round((Date.now() - started) / 10)))
  }
}
