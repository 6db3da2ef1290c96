import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {AgentApi} from '../../src/agent/agent.js'
import type {AgentLog} from '../../src/agent/logger.js'
import {ApiError} from '../../src/core/api/api-error.js'
import type {Bid, CallOptions, HealthCheck, HeartbeatBody, OpenOrdersPage, ProvisioningReport, ReportedInstance} from '../../src/core/api/provider.js'
import type {PublishedOffering} from '../../src/core/api/main-key.js'
import type {Contract, HeartbeatResponse, LockResponse, ReconcileResponse, SignedRequest, UsageResponse} from '../../src/core/api/schemas.js'
import type {Offering} from '../../src/core/config/schema.js'
import {CONTRACTS_PATH} from '../../src/core/contract-request.js'
import type {StakeInfo} from '../../src/core/api/stake.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair, randomHex, requestSigningMessage, signBytes, type KeyPair, type SignedUsageRecord} from '../../src/core/signing.js'
import {checkClaim, healthOfClaim, type Capacity, type InstanceClaim, type InstanceHealth, type ListedInstance, type ProvisionedInstance, type Provisioner, type SetupCheck} from '../../src/provisioners/provisioner.js'

/**
 * Fakes for the agent's unit tests: a marketplace that answers in memory and records what it was asked, a backend
 * that makes instances in memory, and a log that keeps its lines. The end-to-end tests run the real ones.
 */

export const renterKey: KeyPair = generateKeyPair()

/** What the fake marketplace publishes for the provider, and the agent's [[offerings]] of the same names. */
export const OFFERINGS: Offering[] = [
  {name: 'standard', product_type: 'compute', cpu_cores: 8, memory_mb: 16_384, storage_gb: 200, gpu_count: 4, price_per_hour: '0.5'},
  {name: 'gpu', product_type: 'gpu', cpu_cores: 8, memory_mb: 16_384, storage_gb: 200, gpu_count: 4, price_per_hour: '2'},
]
export const OFFERING_IDS: Record<string, string> = {standard: 'offering-1', gpu: 'offering-gpu'}

const MARKET_HOST = 'market.test'

/** The renter's signed POST /contracts (PROTOCOL §6) for these fields, dated `timestamp`. */
export function signedContractRequest(fields: {offering_id: string; ssh_pubkey: string; instance_config?: Contract['instance_config']}, timestamp: number, key = renterKey): SignedRequest {
  const body = Buffer.from(JSON.stringify({...fields, duration_hours: 1}))
  const nonce = randomHex(16)
  const message = requestSigningMessage({method: 'POST', host: MARKET_HOST, pathAndQuery: CONTRACTS_PATH, body, timestamp, nonce})
  return {host: MARKET_HOST, timestamp, nonce, body_b64: body.toString('base64'), signature: toHex(signBytes(message, key.seed))}
}

/** A contract as the renter asked for it: its request is signed by `renterKey` for the fields it ends up with. */
export function contract(overrides: Partial<Contract> = {}): Contract {
  const fields: Contract = {
    contract_id: randomHex(16),
    offering_id: overrides.product_type === 'gpu' ? (OFFERING_IDS.gpu ?? '') : (OFFERING_IDS.standard ?? ''),
    product_type: 'compute',
    cpu_cores: 2,
    memory_mb: 2048,
    storage_gb: 20,
    gpu_count: 0,
    requester_pubkey: toHex(renterKey.publicKey),
    ssh_pubkey: 'ssh-ed25519 AAAA renter',
    created_at: Date.now(),
    status: 'accepted',
    ...overrides,
  }
  return {request: signedContractRequest(fields, fields.created_at), ...fields}
}

/** An answer the marketplace gives for good (a 4xx): retrying can't change it. */
export function refusal(status: number, apiCode: string): ApiError {
  return new ApiError({status, apiCode, message: `${apiCode} (test)`})
}

/** An answer that could not be read (a 2xx cut short): the request may or may not have taken effect. */
export function unreadable(): ApiError {
  return new ApiError({status: 200, apiCode: 'unreadable_response', message: 'the answer was cut off (test)', unknown: true})
}

/** No answer at all: the marketplace can't be reached (retrying may help). */
export function unreachable(): ApiError {
  return new ApiError({status: 0, apiCode: 'network_error', message: 'connection refused (test)'})
}

/** What the fake marketplace is asked, by route; `provisioning:<status>` for the provisioning reports. */
export type Route =
  | 'heartbeat'
  | 'lock'
  | 'unlock'
  | 'provisioning:provisioning'
  | 'provisioning:provisioned'
  | 'provisioning:provisioning_failed'
  | 'terminated'
  | 'usage'
  | 'active'
  | 'pending'

interface Gate {
  opened: Promise<void>
  open: () => void
}

/** The agent's routes of PROTOCOL §§5 and 7, in memory. Every call is recorded as `<route> <contract id>`. */
export class FakeMarketplace implements AgentApi {
  readonly calls: string[] = []
  readonly provisioningReports: {contractId: string; report: ProvisioningReport}[] = []
  readonly usageRecords: SignedUsageRecord[] = []
  readonly heartbeats: HeartbeatBody[] = []
  readonly healthChecks: HealthCheck[] = []
  pending: Contract[] = []
  active: Contract[] = []
  /** What pending-provision says the stake tier holds back (undefined: says nothing, as PROTOCOL §7 has it). */
  tierLimited: number | undefined
  stakeInfo: StakeInfo = {staked: '0', tier: 'unstaked', max_concurrent_contracts: 2, unbonding: [], rewards_pending: '0'}
  heartbeatAnswer: HeartbeatResponse = {acknowledged: true, next_heartbeat_seconds: 60}
  private readonly failures = new Map<Route, Error[]>()
  private readonly gates = new Map<Route, Gate>()
  private readonly known = new Map<string, Contract>()

  /** The next calls of `route` fail with these errors, one each, in order. */
  failNext(route: Route, ...errors: Error[]): void {
    this.failures.set(route, [...(this.failures.get(route) ?? []), ...errors])
  }

  /** Calls of `route` wait until the returned function is called (they are recorded when they arrive). */
  hold(route: Route): () => void {
    let open = () => undefined as void
    const opened = new Promise<void>((resolve) => (open = resolve))
    this.gates.set(route, {opened, open})
    return () => {
      this.gates.delete(route)
      open()
    }
  }

  callsOf(route: Route): string[] {
    return this.calls.filter((call) => call.split(' ')[0] === route)
  }

  async heartbeat(body: HeartbeatBody): Promise<HeartbeatResponse> {
    this.heartbeats.push(body)
    await this.answer('heartbeat', '')
    return this.heartbeatAnswer
  }

  async pendingProvision(): Promise<Contract[]> {
    await this.answer('pending', '')
    for (const pending of this.pending) this.known.set(pending.contract_id, pending)
    return this.pending
  }

  async pendingWork(): Promise<{contracts: Contract[]; tierLimited: number | undefined}> {
    return {contracts: await this.pendingProvision(), tierLimited: this.tierLimited}
  }

  /** GET /offerings: what the provider publishes (a test may change it). */
  published: PublishedOffering[] = OFFERINGS.map((offering) => ({...offering, offering_id: OFFERING_IDS[offering.name] ?? offering.name}))

  async offerings(): Promise<PublishedOffering[]> {
    this.calls.push('offerings')
    return this.published
  }

  async stake(): Promise<StakeInfo> {
    return this.stakeInfo
  }

  async lock(contractId: string, ttlSeconds: number): Promise<LockResponse> {
    await this.answer('lock', contractId)
    return {acquired: true, expires_at: Date.now() + ttlSeconds * 1000}
  }

  async unlock(contractId: string): Promise<void> {
    await this.answer('unlock', contractId)
  }

  async reportProvisioning(contractId: string, report: ProvisioningReport): Promise<Contract> {
    await this.answer(`provisioning:${report.status}`, contractId)
    this.provisioningReports.push({contractId, report})
    return this.contractAnswer(contractId)
  }

  async activeContracts(): Promise<Contract[]> {
    await this.answer('active', '')
    return this.active
  }

  /** A terminated contract leaves the active list, as on the marketplace. */
  async reportTerminated(contractId: string): Promise<Contract> {
    await this.answer('terminated', contractId)
    this.active = this.active.filter((contract) => contract.contract_id !== contractId)
    return this.contractAnswer(contractId)
  }

  async reconcile(instances: ReportedInstance[]): Promise<ReconcileResponse> {
    const keep = instances.map((instance) => ({external_id: instance.external_id, contract_id: instance.contract_id ?? undefined}))
    return {keep, terminate: [], unknown: []}
  }

  async reportHealth(checks: HealthCheck[]): Promise<{accepted: number}> {
    this.healthChecks.push(...checks)
    return {accepted: checks.length}
  }

  async reportUsage(records: SignedUsageRecord[]): Promise<UsageResponse> {
    await this.answer('usage', records[0]?.contract_id ?? '')
    this.usageRecords.push(...records)
    return {accepted: records.length, duplicates: 0}
  }

  /** §11: no orders are ever open here. */
  async openOrdersPage(_waitSeconds: number, _cursor: string | undefined, _options?: CallOptions): Promise<OpenOrdersPage> {
    return {orders: [], nextCursor: undefined, full: false}
  }

  async placeBid(orderId: string): Promise<Bid> {
    throw refusal(404, `no order ${orderId}`)
  }

  async ownBid(): Promise<Bid | undefined> {
    return undefined
  }

  private async answer(route: Route, contractId: string): Promise<void> {
    this.calls.push(contractId ? `${route} ${contractId}` : route)
    await this.gates.get(route)?.opened
    const error = this.failures.get(route)?.shift()
    if (error) throw error
  }

  private contractAnswer(contractId: string): Contract {
    return this.known.get(contractId) ?? contract({contract_id: contractId})
  }
}

/** A backend that makes instances in memory; every call is recorded as `<method> <id>`. */
export class FakeProvisioner implements Provisioner {
  readonly type = 'fake'
  readonly calls: string[] = []
  readonly instances = new Map<string, ProvisionedInstance>()
  /** Thrown by the next provision() calls, one each. */
  readonly provisionFailures: Error[] = []

  async provision(contract: Contract): Promise<ProvisionedInstance> {
    this.calls.push(`provision ${contract.contract_id}`)
    const failure = this.provisionFailures.shift()
    if (failure) throw failure
    return this.make(contract.contract_id)
  }

  /** An instance as a previous run would have left it. */
  make(contractId: string): ProvisionedInstance {
    const instance: ProvisionedInstance = {
      externalId: `fake-${contractId}`,
      contractId,
      ipAddress: '127.0.0.1',
      sshPort: 2222,
      credentials: {password: 'instance-password-test'},
    }
    this.instances.set(instance.externalId, instance)
    return instance
  }

  /** Like every backend: only the contract's own instances, and a claim naming another is refused. */
  async terminate(claim: InstanceClaim): Promise<void> {
    for (const instance of checkClaim(claim, this.instancesOf(claim.contractId))) {
      this.calls.push(`terminate ${instance.externalId}`)
      this.instances.delete(instance.externalId)
    }
  }

  async health(claim: InstanceClaim): Promise<InstanceHealth> {
    return healthOfClaim('instance', claim, async () => this.instancesOf(claim.contractId), () => ({status: 'healthy'}))
  }

  private instancesOf(contractId: string): ProvisionedInstance[] {
    return [...this.instances.values()].filter((instance) => instance.contractId === contractId)
  }

  async find(contractId: string): Promise<ProvisionedInstance | undefined> {
    this.calls.push(`find ${contractId}`)
    return [...this.instances.values()].find((instance) => instance.contractId === contractId)
  }

  async list(): Promise<ListedInstance[]> {
    return [...this.instances.values()].map((instance) => ({externalId: instance.externalId, contractId: instance.contractId, name: `outpost-${instance.contractId}`}))
  }

  async verifySetup(): Promise<SetupCheck[]> {
    return []
  }

  async capacity(): Promise<Capacity> {
    return {cpuCores: 8, memoryMb: 16_384, storageGb: 200, gpuCount: 0}
  }
}

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error'
  details: Record<string, unknown>
  message: string
}

/** An AgentLog that keeps its lines. */
export class RecordingLog implements AgentLog {
  readonly lines: LogLine[] = []

  debug(details: Record<string, unknown>, message: string): void {
    this.lines.push({level: 'debug', details, message})
  }

  info(details: Record<string, unknown>, message: string): void {
    this.lines.push({level: 'info', details, message})
  }

  warn(details: Record<string, unknown>, message: string): void {
    this.lines.push({level: 'warn', details, message})
  }

  error(details: Record<string, unknown>, message: string): void {
    this.lines.push({level: 'error', details, message})
  }
}

/** A temporary state dir, removed by the returned function. */
export function tempStateDir(): {dir: string; remove: () => void} {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-agent-unit-'))
  return {dir, remove: () => rmSync(dir, {recursive: true, force: true})}
}
