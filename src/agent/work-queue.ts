export interface WorkQueueOptions<Item> {
  /** Items worked on at once. */
  concurrency: number
  /** An item's identity: one item per id is in hand at a time. */
  idOf: (item: Item) => string
  /** Works one item; `resumed` is what it was enqueued with (a previous run had started it). */
  work: (item: Item, resumed: boolean) => Promise<void>
  /** A rejection of `work`: a bug, since work settles its own failures. */
  onUnexpected: (id: string, error: unknown) => void
  /** How long an item given to retryLater() waits before it is enqueued again. */
  retryDelayMs: () => number
}

/**
 * The work in hand: items waiting for a slot, being worked on, or waiting to be retried, at most `concurrency` at once.
 * It remembers what it declined for a while, so a poll that returns the same item again does not spin, and it lets
 * the poll wait for room, so polls never outrun the work.
 */
export class WorkQueue<Item> {
  private readonly waiting: {item: Item; resumed: boolean}[] = []
  private readonly running = new Map<string, Promise<void>>()
  /** Every item waiting, running or due for a retry, by id. */
  private readonly inHand = new Map<string, Item>()
  /** The timers of items due for a retry: they stay in hand until the timer puts them back in line. */
  private readonly retries = new Map<string, NodeJS.Timeout>()
  private readonly declinedUntil = new Map<string, number>()
  private roomWaiters: (() => void)[] = []
  private stopped = false

  constructor(private readonly options: WorkQueueOptions<Item>) {}

  /** Whether a polled item is new work: not in hand, not declined recently, and the queue still takes work. */
  accepts(id: string): boolean {
    if (this.stopped || this.inHand.has(id)) return false
    const until = this.declinedUntil.get(id)
    if (until === undefined) return true
    if (until > Date.now()) return false
    this.declinedUntil.delete(id)
    return true
  }

  /** True while the item waits, runs or is due for a retry. */
  holds(id: string): boolean {
    return this.inHand.has(id)
  }

  /** The items in hand (for the bid engine, which counts what they take). */
  held(): Item[] {
    return [...this.inHand.values()]
  }

  get runningCount(): number {
    return this.running.size
  }

  enqueue(item: Item, resumed: boolean): void {
    this.inHand.set(this.options.idOf(item), item)
    this.waiting.push({item, resumed})
    this.pump()
  }

  /** Leaves the item alone for `forMs`: a poll that returns it meanwhile is not new work. */
  decline(id: string, forMs: number): void {
    this.declinedUntil.set(id, Date.now() + forMs)
    if (this.declinedUntil.size > 10_000) {
      const now = Date.now()
      for (const [declined, until] of this.declinedUntil) if (until <= now) this.declinedUntil.delete(declined)
    }
  }

  /**
   * Works the item again later, keeping it in hand meanwhile; called from its own work, which then returns. A resumed
   * item is retried here rather than left to the next poll, which would return it only after its lock expired.
   */
  retryLater(item: Item, resumed: boolean): void {
    if (this.stopped) return
    const id = this.options.idOf(item)
    const timer = setTimeout(() => {
      this.retries.delete(id)
      this.enqueue(item, resumed)
    }, this.options.retryDelayMs())
    this.retries.set(id, timer)
  }

  /** Resolves when nothing waits and a slot is free (or the queue stopped). */
  room(): Promise<void> {
    if (this.stopped || this.hasRoom()) return Promise.resolve()
    return new Promise((resolve) => this.roomWaiters.push(resolve))
  }

  /** Resolves when nothing is waiting or running. */
  async idle(): Promise<void> {
    while (this.running.size > 0 || this.waiting.length > 0) await Promise.all([...this.running.values()])
  }

  /** Takes no more work: drops the retries and what waits (returned, so the caller can say so); running work goes on. */
  stop(): Item[] {
    this.stopped = true
    for (const [id, timer] of this.retries) {
      clearTimeout(timer)
      this.inHand.delete(id)
    }
    this.retries.clear()
    this.releaseRoomWaiters()
    const dropped = this.waiting.splice(0).map(({item}) => item)
    for (const item of dropped) this.inHand.delete(this.options.idOf(item))
    return dropped
  }

  private hasRoom(): boolean {
    return this.waiting.length === 0 && this.running.size < this.options.concurrency
  }

  private pump(): void {
    while (!this.stopped && this.running.size < this.options.concurrency) {
      const next = this.waiting.shift()
      if (!next) break
      const id = this.options.idOf(next.item)
      const work = this.options
        .work(next.item, next.resumed)
        .catch((error: unknown) => this.options.onUnexpected(id, error))
        .finally(() => {
          this.running.delete(id)
          if (!this.retries.has(id)) this.inHand.delete(id)
          this.pump()
        })
      this.running.set(id, work)
    }
    if (this.hasRoom()) this.releaseRoomWaiters()
  }

  private releaseRoomWaiters(): void {
    for (const waiter of this.roomWaiters.splice(0)) waiter()
  }
}
