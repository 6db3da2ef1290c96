import type {Contract} from '../core/api/schemas.js'
import {describeError} from '../core/errors.js'
import type {FailureCategory} from '../core/failure.js'
import type {GpuUnit} from '../gpu/allocator.js'

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
  /** The models of those GPUs, as published. */
  gpuModels?: string[]
}

export interface SetupCheck {
  name: string
  ok: boolean
  message: string
  remedy?: string
}

const NAME_PREFIX = 'outpost-'
/** `outpost-` and a contract id (PROTOCOL §6: 32 lowercase hex characters). */
const INSTANCE_NAME = /^outpost-([0-9a-f]{32})$/

/** The contract's instance name on every backend, so a restarted agent finds what it made before. */
export function instanceName(contractId: string): string {
  return `${NAME_PREFIX}${contractId}`
}

/** The contract an instance name was made for, or undefined when the name is not `outpost-<contract id>`. */
export function contractIdFromName(name: string): string | undefined {
  return INSTANCE_NAME.exec(name)?.[1]
}

/** Whether a backend's name is one outpost gives (`outpost-*`): nothing else is ever destroyed or pruned. */
export function isOutpostName(name: string | undefined): boolean {
  return name?.startsWith(NAME_PREFIX) ?? false
}

/** The label naming the contract an instance serves, on backends that label what they make (Docker, Hetzner). */
export const CONTRACT_LABEL = 'outpost.contract'
/** The label marking what outpost made, and so may remove. */
export const MANAGED_LABEL = 'outpost.managed'

/** The labels of the contract's instance (and of anything else made for it, like an uploaded SSH key). */
export function instanceLabels(contractId: string): Record<string, string> {
  return {[CONTRACT_LABEL]: contractId, [MANAGED_LABEL]: 'true'}
}

/** Whether these labels mark something outpost made. */
export function isManaged(labels: Readonly<Record<string, string>> | undefined): boolean {
  return labels?.[MANAGED_LABEL] === 'true'
}

/**
 * A provisioning failure; `retryPossible` tells the marketplace whether another attempt may succeed. The message is
 * for the local log only; the marketplace gets `category` (default `backend_error`) in the agent's own words.
 */
export class ProvisionError extends Error {
  readonly retryPossible: boolean
  readonly category: FailureCategory

  constructor(message: string, options: {retryPossible: boolean; cause?: unknown; category?: FailureCategory}) {
    super(message, {cause: options.cause})
    this.name = 'ProvisionError'
    this.retryPossible = options.retryPossible
    this.category = options.category ?? 'backend_error'
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
 * Which instance a call is about. The backend finds the contract's own instance by what it gave it (the name
 * `outpost-<contract>`, or the contract label); `externalId` is what the caller was told that instance is (the
 * marketplace's word, a listing's), checked against what the backend finds and never used to find anything.
 */
export interface InstanceClaim {
  contractId: string
  externalId?: string
}

/** The caller named an instance that is not the contract's own: nothing was done to either. */
export class InstanceMismatchError extends ProvisionError {
  constructor(
    readonly claim: Required<InstanceClaim>,
    readonly found: readonly string[],
  ) {
    super(`contract ${claim.contractId}: named instance ${claim.externalId} is not this contract's (${found.join(', ')}): refused, nothing done`, {retryPossible: false})
    this.name = 'InstanceMismatchError'
  }
}

/**
 * The contract's instances, `candidates` (what the backend's own names or labels tie to the claim's contract), once the
 * claim is checked against them: a claimed external id that is none of them is refused. No candidates is no instance,
 * whatever the claim names: the named one belongs to another contract, or to nobody, and is left alone.
 */
export function checkClaim<T extends {externalId: string}>(claim: InstanceClaim, candidates: readonly T[]): readonly T[] {
  const {contractId, externalId} = claim
  if (externalId !== undefined && candidates.length > 0 && !candidates.some((candidate) => candidate.externalId === externalId)) {
    throw new InstanceMismatchError({contractId, externalId}, candidates.map((candidate) => candidate.externalId))
  }
  return candidates
}

/**
 * One interface for every backend. Every method is idempotent: provision() finds the contract's existing instance
 * before creating one; terminate() of a contract whose instance is gone, or was never made, succeeds at once.
 *
 * terminate() and health() act on the claim's contract's own instances only (see InstanceClaim): a claim that names
 * another instance is an InstanceMismatchError, and nothing is touched.
 */
export interface Provisioner {
  readonly type: string
  /**
   * `gpus`: the devices the agent allocated to the contract from gpuUnits(), which the instance gets and no other;
   * a backend that hands out devices fails a GPU contract that comes without them.
   */
  provision(contract: Contract, signal: AbortSignal, gpus?: readonly GpuUnit[]): Promise<ProvisionedInstance>
  /** Removes every instance of the contract. */
  terminate(claim: InstanceClaim, signal?: AbortSignal): Promise<void>
  /** The health of the contract's instance (the claimed one); "unhealthy" when the contract has none. */
  health(claim: InstanceClaim, signal?: AbortSignal): Promise<InstanceHealth>
  find(contractId: string, signal?: AbortSignal): Promise<ProvisionedInstance | undefined>
  list(signal?: AbortSignal): Promise<ListedInstance[]>
  verifySetup(signal?: AbortSignal): Promise<SetupCheck[]>
  capacity(signal?: AbortSignal): Promise<Capacity | undefined>
  /**
   * The GPUs this backend gives instances one contract at a time, for the agent to allocate (and journal); undefined
   * when it names none, or schedules GPUs itself (SLURM's gres).
   */
  gpuUnits?(signal?: AbortSignal): Promise<GpuUnit[] | undefined>
  /** Releases connections and timers; instances keep running. */
  close?(): Promise<void>
}

/**
 * A health check of the claim's instance among the contract's `candidates`: when the backend can't be asked, the
 * health is "unknown" (not a provisioning failure); a contract without an instance is "unhealthy", on every backend;
 * a claim naming another instance is refused; an abort still aborts. `what` names the instance's kind: "container"
 * gives "container not found".
 */
export async function healthOfClaim<T extends {externalId: string}>(
  what: string,
  claim: InstanceClaim,
  candidates: () => Promise<readonly T[]>,
  judge: (found: T) => InstanceHealth | Promise<InstanceHealth>,
): Promise<InstanceHealth> {
  let found: readonly T[]
  try {
    found = await candidates()
  } catch (error) {
    if (error instanceof ProvisionAbortedError) throw error
    return {status: 'unknown', details: {error: describeError(error)}}
  }
  const mine = checkClaim(claim, found)
  const instance = mine.find((candidate) => candidate.externalId === claim.externalId) ?? mine[0]
  if (instance === undefined) return {status: 'unhealthy', details: {reason: `${what} not found`}}
  return judge(instance)
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
