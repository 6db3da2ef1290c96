import {HttpError} from './http-error.js'

interface Bucket {
  tokens: number
  updatedAt: number
}

/**
 * A token bucket per key (§4: 429 with Retry-After). Refills `perSecond` tokens a second up to a burst of one
 * second's worth. Buckets idle long enough to be full again are dropped, so memory follows the active keys.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()

  constructor(private readonly perSecond: number) {
    if (!(perSecond > 0)) throw new RangeError('the rate limit is a positive number of requests per second')
  }

  take(key: string, now: number): void {
    const bucket = this.buckets.get(key) ?? {tokens: this.perSecond, updatedAt: now}
    bucket.tokens = Math.min(this.perSecond, bucket.tokens + ((now - bucket.updatedAt) / 1000) * this.perSecond)
    bucket.updatedAt = now
    this.buckets.set(key, bucket)
    if (bucket.tokens < 1) {
      const retryAfterSeconds = Math.max(1, Math.ceil((1 - bucket.tokens) / this.perSecond))
      throw new HttpError(429, 'rate_limited', `more than ${this.perSecond} requests a second from this key`, undefined, {'retry-after': String(retryAfterSeconds)})
    }
    bucket.tokens -= 1
  }

  forgetIdle(now: number): void {
    for (const [key, bucket] of this.buckets) if (now - bucket.updatedAt > 1000) this.buckets.delete(key)
  }
}
