import {HttpError} from './http-error.js'

interface Bucket {
  tokens: number
  updatedAt: number
}

const rateLimited = (message: string, retryAfterSeconds: number) =>
  new HttpError(429, 'rate_limited', message, undefined, {'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds)))})

/**
 * A token bucket per key (§4: 429 with Retry-After). Refills `perSecond` tokens a second up to a burst of
 * `burstSeconds` seconds' worth. Buckets idle long enough to be full again are dropped, so memory follows the
 * active keys.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private readonly burst: number

  constructor(
    private readonly perSecond: number,
    /** The 429's message, saying whose limit was met. */
    private readonly message: string,
    burstSeconds = 2,
  ) {
    if (!(perSecond > 0)) throw new RangeError('the rate limit is a positive number of requests per second')
    this.burst = Math.max(1, perSecond * burstSeconds)
  }

  take(key: string, now: number): void {
    const bucket = this.buckets.get(key) ?? {tokens: this.burst, updatedAt: now}
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.updatedAt) / 1000) * this.perSecond)
    bucket.updatedAt = now
    this.buckets.set(key, bucket)
    if (bucket.tokens < 1) throw rateLimited(this.message, (1 - bucket.tokens) / this.perSecond)
    bucket.tokens -= 1
  }

  forgetIdle(now: number): void {
    const fullAfterMs = (this.burst / this.perSecond) * 1000
    for (const [key, bucket] of this.buckets) if (now - bucket.updatedAt > fullAfterMs) this.buckets.delete(key)
  }
}

/** How long a client refused a held poll should wait before asking again. */
export const LONG_POLL_RETRY_AFTER_SECONDS = 5

/**
 * Caps on held long polls (§7, §11, §12): each holds a socket and a listener for up to 30 s, and keys are free, so
 * there is a limit per signing key and one in total. Past either, the poll is refused with 429 and Retry-After
 * instead of being held.
 */
export class LongPollGate {
  private readonly held = new Map<string, number>()
  private total = 0

  constructor(
    readonly perKey: number,
    readonly overall: number,
  ) {
    if (!(perKey >= 1 && overall >= 1)) throw new RangeError('long poll caps are at least 1')
  }

  /** Registers one held poll for `key`; the returned function releases it (once). */
  enter(key: string): () => void {
    const mine = this.held.get(key) ?? 0
    if (mine >= this.perKey) throw rateLimited(`this key already holds ${this.perKey} long polls: wait for one to end`, LONG_POLL_RETRY_AFTER_SECONDS)
    if (this.total >= this.overall) throw rateLimited(`the marketplace holds ${this.overall} long polls, its most: ask again without wait, or later`, LONG_POLL_RETRY_AFTER_SECONDS)
    this.held.set(key, mine + 1)
    this.total++
    let released = false
    return () => {
      if (released) return
      released = true
      this.total--
      const left = (this.held.get(key) ?? 1) - 1
      if (left === 0) this.held.delete(key)
      else this.held.set(key, left)
    }
  }

  get holding(): number {
    return this.total
  }
}
