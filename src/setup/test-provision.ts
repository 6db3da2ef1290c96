import {randomBytes} from 'node:crypto'
import {setTimeout as sleep} from 'node:timers/promises'

import type {Contract} from '../core/api/schemas.js'
import type {LoadedConfig} from '../core/config/load.js'
import {describeError, ExitCode, UserError} from '../core/errors.js'
import {journalPath, journalState, readJournal} from '../agent/journal.js'
import {GpuAllocator, GpuShortageError, type GpuUnit} from '../gpu/allocator.js'
import {createProvisioner} from '../provisioners/index.js'
import {ProvisionAbortedError, ProvisionError, type InstanceHealth, type ProvisionedInstance, type Provisioner, type ProvisionerLogger} from '../provisioners/provisioner.js'

export interface TestProvisionOptions {
  loaded: LoadedConfig
  /** Installed in the test instance, so the operator can log in to it (with --keep). */
  sshPubkey?: string
  keep: boolean
  /** Stops the run (Ctrl-C); what was made is cleaned up unless keep. */
  signal?: AbortSignal
  /** Longest wait for the first healthy check after the address is known. */
  healthTimeoutMs?: number
  logger?: ProvisionerLogger
}

export interface TestProvisionPhase {
  name: string
  ms: number
}

export interface TestProvisionResult {
  provisioner: string
  contract_id: string
  resources: {cpu_cores: number; memory_mb: number; storage_gb: number}
  instance: {external_id: string; ip_address: string; ipv6_address?: string; ssh_port: number; credentials_received: boolean}
  /** The backend's health answer, with the --json fields in snake_case like every other. */
  health: {status: InstanceHealth['status']; uptime_seconds?: number; details?: Record<string, unknown>}
  phases: TestProvisionPhase[]
  total_ms: number
  kept: boolean
}

const DEFAULT_RESOURCES = {cpu_cores: 1, memory_mb: 1024, storage_gb: 10}

/** A contract as a marketplace would send it, sized like the first offering of the config. */
export function testContract(loaded: LoadedConfig, sshPubkey: string | undefined): Contract {
  const offering = loaded.config.offerings[0]
  const resources = offering ? {cpu_cores: offering.cpu_cores, memory_mb: offering.memory_mb, storage_gb: offering.storage_gb} : DEFAULT_RESOURCES
  return {
    contract_id: randomBytes(16).toString('hex'),
    offering_id: 'outpost-test-provision',
    product_type: offering?.product_type ?? 'compute',
    ...resources,
    gpu_count: offering?.gpu_count ?? 0,
    requester_pubkey: randomBytes(32).toString('hex'),
    ssh_pubkey: sshPubkey?.trim() ?? '',
    instance_config: null,
    created_at: Date.now(),
    status: 'accepted',
  }
}

/** Polls health until it says healthy (a machine may need a moment after its address is known) or time is up. */
async function firstHealth(provisioner: Provisioner, instance: ProvisionedInstance, timeoutMs: number, signal?: AbortSignal): Promise<InstanceHealth> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const health = await provisioner.health(instance, signal)
    if (health.status === 'healthy' || Date.now() >= deadline) return health
    await sleep(500, undefined, {signal})
  }
}

/**
 * The devices of a GPU test contract: free ones, by the agent's journal. They are not journalled: the test instance
 * is gone before this command returns (with --keep the operator terminates it, as the suggestion says).
 */
async function testGpus(provisioner: Provisioner, contract: Contract, stateDir: string): Promise<GpuUnit[] | undefined> {
  if (contract.gpu_count === 0) return undefined
  const units = await provisioner.gpuUnits?.()
  if (units === undefined) return undefined
  const held = journalState(readJournal(journalPath(stateDir)).entries).gpus
  try {
    return new GpuAllocator(units, held, {allocated: () => undefined, released: () => undefined}).allocate('test-provision', {count: contract.gpu_count})
  } catch (error) {
    if (!(error instanceof GpuShortageError)) throw error
    throw new UserError(`the test contract (your first offering) asks for GPUs: ${error.message}`, {code: 'no_gpu', suggestion: 'free a GPU, or fix [gpu] (see `outpost doctor`)'})
  }
}

/** Removes what the run made, whatever state it reached (a failed or interrupted provision included). */
async function cleanUp(provisioner: Provisioner, contractId: string): Promise<void> {
  await provisioner.terminate({contractId})
}

/**
 * `outpost test-provision`: provisions one test instance with the configured backend, checks its health, terminates
 * it (unless keep) and times each phase: the backend's own (Proxmox: clone, configure, start, address) and ours.
 */
export async function testProvision(options: TestProvisionOptions): Promise<TestProvisionResult> {
  const contract = testContract(options.loaded, options.sshPubkey)
  const provisioner = createProvisioner(options.loaded, {logger: options.logger})
  const phases: TestProvisionPhase[] = []
  const started = performance.now()
  const timed = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const phaseStart = performance.now()
    const value = await work()
    phases.push({name, ms: Math.round(performance.now() - phaseStart)})
    return value
  }
  try {
    const signal = options.signal ?? new AbortController().signal
    let instance
    try {
      const provisionStart = performance.now()
      instance = await provisioner.provision(contract, signal, await testGpus(provisioner, contract, options.loaded.paths.stateDir))
      const backendPhases = instance.details?.timings_ms
      if (backendPhases && typeof backendPhases === 'object') {
        for (const [name, ms] of Object.entries(backendPhases)) if (typeof ms === 'number') phases.push({name, ms})
      } else {
        phases.push({name: 'provision', ms: Math.round(performance.now() - provisionStart)})
      }
    } catch (error) {
      if (!options.keep) await cleanUp(provisioner, contract.contract_id).catch(() => undefined)
      if (error instanceof ProvisionAbortedError) throw new UserError('test provisioning interrupted', {code: 'interrupted', cause: error})
      throw new UserError(`test provisioning with ${provisioner.type} failed: ${describeError(error)}`, {
        code: 'provision_failed',
        suggestion:
          error instanceof ProvisionError && !error.retryPossible
            ? 'fix the setup that the error names, then run `outpost doctor`'
            : 'run `outpost doctor`, then try again',
        cause: error,
      })
    }
    const health = await timed('health', () => firstHealth(provisioner, instance, options.healthTimeoutMs ?? 60_000, signal))
    if (!options.keep) await timed('terminate', () => provisioner.terminate(instance))
    const result: TestProvisionResult = {
      provisioner: provisioner.type,
      contract_id: contract.contract_id,
      resources: {cpu_cores: contract.cpu_cores, memory_mb: contract.memory_mb, storage_gb: contract.storage_gb},
      instance: {
        external_id: instance.externalId,
        ip_address: instance.ipAddress,
        ...(instance.ipv6Address ? {ipv6_address: instance.ipv6Address} : {}),
        ssh_port: instance.sshPort,
        credentials_received: instance.credentials !== undefined,
      },
      health: {
        status: health.status,
        ...(health.uptimeSeconds === undefined ? {} : {uptime_seconds: health.uptimeSeconds}),
        ...(health.details ? {details: health.details} : {}),
      },
      phases,
      total_ms: Math.round(performance.now() - started),
      kept: options.keep,
    }
    if (health.status !== 'healthy') {
      throw new UserError(`the test instance came up but is ${health.status}: ${JSON.stringify(health.details ?? {})}`, {
        code: 'unhealthy',
        exit: ExitCode.checksFailed,
        suggestion: options.keep ? `inspect instance ${instance.externalId}, then terminate it` : 'check the template (guest agent, network) and run again with --keep to inspect',
      })
    }
    return result
  } finally {
    await provisioner.close?.()
  }
}
