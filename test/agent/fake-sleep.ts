/**
 * vitest's fake timers replace the global setTimeout, not node:timers/promises (the agent's pause() sleeps with it):
 * a test that fakes time routes it through the global one with
 * `vi.mock('node:timers/promises', () => import('./fake-sleep.js'))`. No imports here, so the mock can load it first.
 */
export function setTimeout<T>(ms: number, value: T, options?: {signal?: AbortSignal}): Promise<T> {
  return new Promise((resolve, reject) => {
    const signal = options?.signal
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    // Like node's own: the abort listener goes when the sleep ends, so a long-lived signal collects none.
    const timer = globalThis.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve(value)
    }, ms)
    signal?.addEventListener('abort', onAbort, {once: true})
  })
}
