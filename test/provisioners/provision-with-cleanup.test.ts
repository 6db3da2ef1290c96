import {describe, expect, it} from 'vitest'

import {OneAtATime} from '../../src/provisioners/one-at-a-time.js'
import {provisionWithCleanup} from '../../src/provisioners/provision-with-cleanup.js'
import {contractIdFromName, instanceName, isOutpostName, ProvisionAbortedError, ProvisionError} from '../../src/provisioners/provisioner.js'
import {failure} from '../support/provisioners.js'

const quiet = () => new AbortController().signal
const id = 'ab'.repeat(16)

describe('provisionWithCleanup', () => {
  it('cleans up after a failure and reports the failure, converted to a ProvisionError', async () => {
    const cleaned: string[] = []
    const error = await failure(
      provisionWithCleanup(new OneAtATime(), 'outpost-x', quiet(), {
        attempt: async () => {
          throw new Error('disk full')
        },
        cleanUp: async (reported) => {
          cleaned.push(reported.message)
        },
      }),
    )
    expect(error.message).toBe('provisioning outpost-x: disk full')
    expect(error.retryPossible).toBe(true)
    expect(cleaned).toEqual(['provisioning outpost-x: disk full'])
  })

  it('reports what the cleanup returns instead, and names a cleanup that failed too', async () => {
    const attempt = async () => {
      throw new ProvisionError('no capacity', {retryPossible: false})
    }
    const kept = await failure(provisionWithCleanup(new OneAtATime(), 'outpost-x', quiet(), {attempt, cleanUp: async (reported) => new ProvisionError(`${reported.message} (kept)`, {retryPossible: false})}))
    expect(kept.message).toBe('no capacity (kept)')
    const both = await failure(
      provisionWithCleanup(new OneAtATime(), 'outpost-x', quiet(), {
        attempt,
        cleanUp: async () => {
          throw new Error('delete refused: 503')
        },
      }),
    )
    expect(both.message).toBe('no capacity; cleaning up after it also failed: delete refused: 503')
    expect(both.retryPossible).toBe(false)
  })

  it('leaves what an aborted attempt made, and starts nothing once the signal has fired', async () => {
    let cleanups = 0
    let attempts = 0
    const steps = {
      attempt: async () => {
        attempts++
        throw new ProvisionAbortedError('waiting for the VM')
      },
      cleanUp: async () => {
        cleanups++
      },
    }
    await expect(provisionWithCleanup(new OneAtATime(), 'outpost-x', quiet(), steps)).rejects.toBeInstanceOf(ProvisionAbortedError)
    const fired = new AbortController()
    fired.abort()
    await expect(provisionWithCleanup(new OneAtATime(), 'outpost-x', fired.signal, steps)).rejects.toBeInstanceOf(ProvisionAbortedError)
    expect({attempts, cleanups}).toEqual({attempts: 1, cleanups: 0})
  })

  it('runs one attempt at a time per instance: the second finds what the first made', async () => {
    const turns = new OneAtATime()
    let made = 0
    const attempt = async () => {
      const existing = made
      await new Promise((resolve) => setTimeout(resolve, 20))
      if (existing === 0) made++
      return made
    }
    const both = await Promise.all([0, 1].map(() => provisionWithCleanup(turns, 'outpost-x', quiet(), {attempt, cleanUp: async () => undefined})))
    expect(both).toEqual([1, 1])
  })
})

describe('instance names', () => {
  it('reads the contract back from its instance name, and only from one', () => {
    expect(contractIdFromName(instanceName(id))).toBe(id)
    expect(contractIdFromName(`outpost-${id}x`)).toBeUndefined()
    expect(contractIdFromName('outpost-../../etc/passwd')).toBeUndefined()
    expect(isOutpostName('outpost-test-vm')).toBe(true)
    expect(isOutpostName('customer-db')).toBe(false)
    expect(isOutpostName(undefined)).toBe(false)
  })
})
