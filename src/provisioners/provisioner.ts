import type {Contract} from '../core/api/schemas.js'
import {describeError} from '../core/errors.js'

/** What a backend made for a contract. `credentials` are sealed to the renter by the agent, never sent in clear. */
export interface ProvisionedInstance {
  /** The backend's own id (a VMID, a container id, a pid file name): stable across agent restarts. */
  externalId: string
  contractId: string
  ipAddress: string
  ipv6Address?: string
  sshPort: number
  credentials?: Record<string, string>
  details?: Record<string, unknown>
}

export type InstanceHealth = {status: 'healthy' | 'unhealthy' | 'unknown'; uptimeSeconds?: number; details?: Record<string, unknown>}

export interface ListedInstance {
  externalId: string
  /** The contract the instance was made for, read from its name or tag, when it carries one. */
  contractId?: string
  /** The backend name, e.g. `outpost-<contract>`; instances not named `outpost-*` are never pruned. */
  name: string
}

export interface Capacity {
  cpuCores: number
  memoryMb: number
  storageGb: number
  gpuCount: number
}

export interface SetupCheck {
  name: string
  ok: boolean
  message: string
  remedy?: string
}

/** The contract's instance name on every backend, so a restarted agent finds what it made before. */
export function instanceName(contractId: string): string {
  return `outpost-${contractId}`
}

/** A provisioning failure; `retryPossible` tells the marketplace whether another attempt may succeed. */
export class ProvisionError extends Error {
  readonly retryPossible: boolean

  constructor(message: string, options: {retryPossible: boolean; cause?: unknown}) {
    super(message, {cause: options.cause})
    this.name = 'ProvisionError'
    this.retryPossible = options.retryPossible
  }
}

/**
 * The work stopped because its AbortSignal fired (the agent is shutting down or gave up waiting), not because the
 * backend failed: the agent checkpoints instead of reporting a failure, and find() resumes the work later.
 */
export class ProvisionAbortedError extends ProvisionError {
  constructor(what: string, options: {cause?: unknown} = {}) {
    super(`${what}: aborted`, {retryPossible: true, cause: options.cause})
    this.name = 'ProvisionAbortedError'
  }
}

/** Throws ProvisionAbortedError when the signal has fired; call between steps of long work. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new ProvisionAbortedError(what, {cause: signal.reason})
}

/** Where a backend writes what the operator should see (pino's (details, message) call shape). */
export interface ProvisionerLogger {
  info(details: Record<string, unknown>, message: string): void
  warn(details: Record<string, unknown>, message: string): void
}

/**
 * One interface for every backend. Every method is idempotent: provision() finds the contract's existing instance
 * before creating one; terminate() of an instance that is already gone succeeds.
 */
export interface Provisioner {
  readonly type: string
  provision(contract: Contract, signal: AbortSignal): Promise<ProvisionedInstance>
  terminate(externalId: string, signal?: AbortSignal): Promise<void>
  health(externalId: string, signal?: AbortSignal): Promise<InstanceHealth>
  find(contractId: string, signal?: AbortSignal): Promise<ProvisionedInstance | undefined>
  list(signal?: AbortSignal): Promise<ListedInstance[]>
  verifySetup(signal?: AbortSignal): Promise<SetupCheck[]>
  capacity(signal?: AbortSignal): Promise<Capacity | undefined>
  /** Releases connections and timers; instances keep running. */
  close?(): Promise<void>
}

/**
 * A health check's lookup: when the backend can't be asked, the instance's health is "unknown" (not a provisioning
 * failure); an abort still aborts.
 */
export async function healthFromLookup<T>(lookup: Promise<T | undefined>, judge: (found: T | undefined) => InstanceHealth | Promise<InstanceHealth>): Promise<InstanceHealth> {
  let found: T | undefined
  try {
    found = await lookup
  } catch (error) {
    if (error instanceof ProvisionAbortedError) throw error
    return {status: 'unknown', details: {error: describeError(error)}}
  }
  return judge(found)
}

/** An error from a backend that knows whether trying again can help (an API's 5xx can, a 4xx can't). */
function knowsIfRetryable(error: unknown): error is Error & {retryable: boolean} {
  return error instanceof Error && typeof (error as {retryable?: unknown}).retryable === 'boolean'
}

/** Any error as a ProvisionError. An error that can't say whether a retry would help is taken to allow one. */
export function toProvisionError(error: unknown, what: string): ProvisionError {
  if (error instanceof ProvisionError) return error
  if (knowsIfRetryable(error)) return new ProvisionError(error.message, {retryPossible: error.retryable, cause: error})
  return new ProvisionError(`${what}: ${describeError(error)}`, {retryPossible: true, cause: error})
}
