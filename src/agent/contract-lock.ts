import type {RetryPolicy} from '../core/api/client.js'
import {ApiError} from '../core/api/api-error.js'
import type {ProviderApi} from '../core/api/provider.js'
import {describeError} from '../core/errors.js'
import type {AgentLog} from './logger.js'

/** The §7 lock routes. */
export type LockApi = Pick<ProviderApi, 'lock' | 'unlock'>

/** A lock asked for: held, refused for good (another agent holds it, or the contract is no longer pending), or not answered. */
export type LockAttempt = {outcome: 'held'} | {outcome: 'refused'; error: ApiError} | {outcome: 'unreachable'; error: unknown}

/** A held lock being renewed: `lost` fires when another agent has taken it; stop() ends the renewals. */
export interface KeptLock {
  lost: AbortSignal
  stop(): void
}

export interface ContractLocksOptions {
  api: LockApi
  ttlSeconds: number
  log: AgentLog
  onApiError: (error: unknown) => void
  retry: RetryPolicy
}

/** The contract locks of PROTOCOL §7: one agent works on a contract at a time, for a TTL it renews while it works. */
export class ContractLocks {
  constructor(private readonly options: ContractLocksOptions) {}

  async acquire(contractId: string, signal: AbortSignal): Promise<LockAttempt> {
    try {
      await this.options.api.lock(contractId, this.options.ttlSeconds, {signal, retry: this.options.retry})
      return {outcome: 'held'}
    } catch (error) {
      this.options.onApiError(error)
      if (error instanceof ApiError && !error.retryable) return {outcome: 'refused', error}
      return {outcome: 'unreachable', error}
    }
  }

  /** Renews the lock every TTL/3 while work goes on; a 409 means another agent has it now, and `lost` fires. */
  keep(contractId: string): KeptLock {
    const lost = new AbortController()
    const {api, ttlSeconds, log, onApiError, retry} = this.options
    const timer = setInterval(() => {
      api.lock(contractId, ttlSeconds, {retry}).catch((error: unknown) => {
        onApiError(error)
        if (error instanceof ApiError && error.status === 409) {
          log.warn({contract_id: contractId, code: error.apiCode}, 'lost the contract lock: stopping work on it')
          lost.abort(new Error(`lock lost: ${error.apiCode}`))
        } else {
          log.warn({contract_id: contractId, err: describeError(error)}, 'could not renew the contract lock; trying again')
        }
      })
    }, (ttlSeconds * 1000) / 3)
    timer.unref()
    return {lost: lost.signal, stop: () => clearInterval(timer)}
  }

  /** Releases the lock; a failure is only logged, since the lock expires by itself. */
  async release(contractId: string): Promise<void> {
    await this.options.api.unlock(contractId, {retry: this.options.retry}).catch((error: unknown) => {
      this.options.onApiError(error)
      this.options.log.debug({contract_id: contractId, err: describeError(error)}, 'could not release the lock (it expires by itself)')
    })
  }
}
