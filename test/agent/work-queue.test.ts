import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {WorkQueue} from '../../src/agent/work-queue.js'

/** The agent's work queue on fake timers: what it holds, how many run at once, declines and retries. */

beforeEach(() => vi.useFakeTimers())
afterEach(() => vi.useRealTimers())

const RETRY_MS = 3000

interface Job {
  id: string
}

/** A queue whose work waits until the test finishes it; `started` lists each start as `<id>` or `<id> (resumed)`. */
function harness(concurrency = 2) {
  const started: string[] = []
  const finishers = new Map<string, {finish: () => void; fail: (error: Error) => void}>()
  const unexpected: string[] = []
  const queue: WorkQueue<Job> = new WorkQueue<Job>({
    concurrency,
    idOf: (job) => job.id,
    work: (job, resumed) => {
      started.push(resumed ? `${job.id} (resumed)` : job.id)
      return new Promise<void>((resolve, reject) => finishers.set(job.id, {finish: resolve, fail: reject}))
    },
    onUnexpected: (id, error) => unexpected.push(`${id}: ${(error as Error).message}`),
    retryDelayMs: () => RETRY_MS,
  })
  /** Ends a job's work and lets the queue take the next. */
  async function finish(id: string): Promise<void> {
    const finisher = finishers.get(id)
    if (!finisher) throw new Error(`${id} is not running`)
    finishers.delete(id)
    finisher.finish()
    await vi.advanceTimersByTimeAsync(0)
  }
  return {queue, started, finish, finishers, unexpected}
}

describe('WorkQueue', () => {
  it('works at most `concurrency` items at once, in the order they came, and takes the next when one finishes', async () => {
    const {queue, started, finish} = harness(2)
    for (const id of ['a', 'b', 'c', 'd']) queue.enqueue({id}, false)
    expect(started).toEqual(['a', 'b'])
    expect(queue.runningCount).toBe(2)
    await finish('b')
    expect(started).toEqual(['a', 'b', 'c'])
    await finish('a')
    await finish('c')
    await finish('d')
    expect(started).toEqual(['a', 'b', 'c', 'd'])
    expect(queue.runningCount).toBe(0)
  })

  it('does not take an item it holds (waiting or running) again, and takes it once its work ended', async () => {
    const {queue, finish} = harness(1)
    queue.enqueue({id: 'a'}, false)
    queue.enqueue({id: 'b'}, false)
    expect(queue.accepts('a')).toBe(false)
    expect(queue.accepts('b')).toBe(false)
    expect(queue.held().map((job) => job.id)).toEqual(['a', 'b'])
    await finish('a')
    expect(queue.accepts('a')).toBe(true)
    expect(queue.held().map((job) => job.id)).toEqual(['b'])
    await finish('b')
    expect(queue.held()).toEqual([])
  })

  it('lets a poll wait for room: nothing waiting and a slot free', async () => {
    const {queue, finish} = harness(1)
    queue.enqueue({id: 'a'}, false)
    queue.enqueue({id: 'b'}, false)
    let roomy = false
    void queue.room().then(() => (roomy = true))
    await vi.advanceTimersByTimeAsync(0)
    expect(roomy).toBe(false)
    await finish('a')
    // b took the slot a left: still no room.
    expect(roomy).toBe(false)
    await finish('b')
    expect(roomy).toBe(true)
  })

  it('leaves a declined item alone for the time given, then takes it again', async () => {
    const {queue} = harness()
    queue.decline('a', 5000)
    expect(queue.accepts('a')).toBe(false)
    await vi.advanceTimersByTimeAsync(4999)
    expect(queue.accepts('a')).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    expect(queue.accepts('a')).toBe(true)
    expect(queue.accepts('b')).toBe(true)
  })

  it('retries an item later with the flag it is given, holding it meanwhile so a poll does not take it twice', async () => {
    const {queue, started, finish} = harness()
    queue.enqueue({id: 'a'}, false)
    queue.retryLater({id: 'a'}, true)
    await finish('a')
    expect(queue.accepts('a')).toBe(false)
    expect(queue.held().map((job) => job.id)).toEqual(['a'])
    await vi.advanceTimersByTimeAsync(RETRY_MS - 1)
    expect(started).toEqual(['a'])
    await vi.advanceTimersByTimeAsync(1)
    expect(started).toEqual(['a', 'a (resumed)'])
    await finish('a')
    expect(queue.accepts('a')).toBe(true)
  })

  it('reports a rejected work as unexpected and frees its slot', async () => {
    const {queue, started, finishers, unexpected} = harness(1)
    queue.enqueue({id: 'a'}, false)
    queue.enqueue({id: 'b'}, false)
    finishers.get('a')?.fail(new Error('boom'))
    await vi.advanceTimersByTimeAsync(0)
    expect(unexpected).toEqual(['a: boom'])
    expect(started).toEqual(['a', 'b'])
  })

  it('idle() resolves once nothing waits or runs, including work that started meanwhile', async () => {
    const {queue, finish} = harness(1)
    queue.enqueue({id: 'a'}, false)
    queue.enqueue({id: 'b'}, false)
    let idle = false
    void queue.idle().then(() => (idle = true))
    await finish('a')
    expect(idle).toBe(false)
    await finish('b')
    expect(idle).toBe(true)
  })

  it('stop() drops what waits and the retries, lets running work finish, frees pollers and takes nothing new', async () => {
    const {queue, started, finish} = harness(1)
    queue.enqueue({id: 'a'}, false)
    queue.enqueue({id: 'b'}, false)
    queue.enqueue({id: 'c'}, false)
    queue.retryLater({id: 'a'}, true)
    let roomy = false
    void queue.room().then(() => (roomy = true))
    expect(queue.stop().map((job) => job.id)).toEqual(['b', 'c'])
    await vi.advanceTimersByTimeAsync(0)
    expect(roomy).toBe(true)
    expect(queue.accepts('d')).toBe(false)
    queue.retryLater({id: 'a'}, true)
    await finish('a')
    await vi.advanceTimersByTimeAsync(10 * RETRY_MS)
    expect(started).toEqual(['a'])
    expect(queue.runningCount).toBe(0)
    await queue.idle()
  })
})
