import {describeError} from '../core/errors.js'
import type {OneAtATime} from './one-at-a-time.js'
import {ProvisionAbortedError, ProvisionError, throwIfAborted, toProvisionError} from './provisioner.js'

export interface ProvisionSteps<T> {
  /** Finds the contract's instance or makes it, and waits until it is ready. */
  attempt: () => Promise<T>
  /**
   * Removes what a failed attempt left behind. It gets no signal: the failure is final for this attempt, so the
   * cleanup runs to its end even when the caller gives up. It may return the failure to report instead (one that
   * says what it kept).
   */
  cleanUp: (failure: ProvisionError) => Promise<ProvisionError | void>
  /** Turns what the attempt threw into the failure to report (default: toProvisionError). */
  toError?: (error: unknown, what: string) => ProvisionError
}

/**
 * A backend's provision() of the instance `name`: one attempt at a time per instance (a second call waits, then finds
 * what the first made), none begun once the signal has fired, and a failed attempt cleaned up. An abort is the agent
 * stopping, not a failure: what was made stays, and the next provision() of the contract resumes it.
 */
export async function provisionWithCleanup<T>(turns: OneAtATime, name: string, signal: AbortSignal, steps: ProvisionSteps<T>): Promise<T> {
  const what = `provisioning ${name}`
  throwIfAborted(signal, what)
  return turns.run(name, async () => {
    throwIfAborted(signal, what)
    try {
      return await steps.attempt()
    } catch (error) {
      if (error instanceof ProvisionAbortedError) throw error
      throw await cleanedUpAfter((steps.toError ?? toProvisionError)(error, what), steps.cleanUp)
    }
  })
}

/** The failure to report once the cleanup has run; a cleanup that fails too is named in it. */
async function cleanedUpAfter(failure: ProvisionError, cleanUp: ProvisionSteps<unknown>['cleanUp']): Promise<ProvisionError> {
  try {
    return (await cleanUp(failure)) ?? failure
  } catch (cleanupError) {
    return new ProvisionError(`${failure.message}; cleaning up after it also failed: ${describeError(cleanupError)}`, {retryPossible: failure.retryPossible, cause: failure})
  }
}
