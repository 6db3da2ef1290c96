export type StopSignal = 'SIGINT' | 'SIGTERM'

export interface StopSignalOptions {
  /** Called once, when the first signal arrives (to log that the process is stopping). */
  onStop?: (signal: StopSignal) => void
  /**
   * After the first signal, a second one means "now": exit at once with 128 + the signal number. For a process
   * whose state is consistent at every step (the agent's journal and outbox), so dying mid-shutdown is safe.
   */
  secondSignalExits?: boolean
}

const EXIT_ON_SIGNAL: Record<StopSignal, number> = {SIGINT: 130, SIGTERM: 143}

/** Resolves with the signal's name when the process is asked to stop (SIGINT or SIGTERM). */
export function waitForStopSignal(options: StopSignalOptions = {}): Promise<StopSignal> {
  return new Promise((resolve) => {
    const stop = (signal: StopSignal) => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      options.onStop?.(signal)
      if (options.secondSignalExits) {
        for (const next of ['SIGINT', 'SIGTERM'] as const) process.once(next, () => process.exit(EXIT_ON_SIGNAL[next]))
      }
      resolve(signal)
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}
