/**
 * Runs the work given for one key one after another. Two provisions of one contract at once would both find no
 * instance and create two; with this the second waits for the first, then finds what it made.
 */
export class OneAtATime {
  private readonly running = new Map<string, Promise<unknown>>()

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.running.get(key) ?? Promise.resolve()
    const current = previous.catch(() => undefined).then(work)
    this.running.set(key, current)
    try {
      return await current
    } finally {
      if (this.running.get(key) === current) this.running.delete(key)
    }
  }
}
