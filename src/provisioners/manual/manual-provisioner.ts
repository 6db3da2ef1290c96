import {accessSync, constants, mkdirSync} from 'node:fs'

import type {Contract} from '../../core/api/schemas.js'
import {describeError} from '../../core/errors.js'
import {
  checkClaim,
  healthOfClaim,
  instanceName,
  ProvisionError,
  throwIfAborted,
  type Capacity,
  type InstanceClaim,
  type InstanceHealth,
  type ListedInstance,
  type ProvisionedInstance,
  type Provisioner,
  type ProvisionerLogger,
  type SetupCheck,
} from '../provisioner.js'
import {OneAtATime} from '../one-at-a-time.js'
import {pollUntil} from '../poll.js'
import {tcpConnects} from '../tcp.js'
import {ManualRequestStore, type ManualInstance, type ManualRequest} from './requests.js'

/** What the backend needs, from `[provisioner.manual]` and the agent's state dir. */
export interface ManualProvisionerOptions {
  stateDir: string
  webhookUrl?: string
  /** The longest between two looks for the operator's answer. */
  pollIntervalMs: number
  logger?: ProvisionerLogger
  /** Time a health check's TCP connect to the machine's SSH port may take. */
  healthTimeoutMs?: number
}

/** Where notices go when the agent gives no logger: one line on stderr each. */
const stderrLogger: ProvisionerLogger = {
  info: (details, message) => process.stderr.write(`${message} ${JSON.stringify(details)}\n`),
  warn: (details, message) => process.stderr.write(`warning: ${message} ${JSON.stringify(details)}\n`),
}

function toInstance(request: ManualRequest, instance: ManualInstance, withCredentials: boolean): ProvisionedInstance {
  return {
    externalId: instance.external_id,
    contractId: request.contract_id,
    ipAddress: instance.ip_address,
    ...(instance.ipv6_address ? {ipv6Address: instance.ipv6_address} : {}),
    sshPort: instance.ssh_port,
    ...(withCredentials && instance.credentials ? {credentials: instance.credentials} : {}),
    details: {answered_at: request.answered_at},
  }
}

/**
 * A provider who provisions by hand: each contract becomes a request file in the state dir and a notice (a log line,
 * and a webhook when configured); the operator answers with `outpost contract complete <id> --ip ...` or
 * `outpost contract fail <id> --reason ...`. provision() waits for that answer as long as it takes: nobody answering
 * yet is never a failure. Terminations are notices too, for the operator to tear the machine down.
 */
export class ManualProvisioner implements Provisioner {
  readonly type = 'manual'
  readonly store: ManualRequestStore
  private readonly logger: ProvisionerLogger
  private readonly provisions = new OneAtATime()

  constructor(private readonly options: ManualProvisionerOptions) {
    this.store = new ManualRequestStore(options.stateDir)
    this.logger = options.logger ?? stderrLogger
  }

  async provision(contract: Contract, signal: AbortSignal): Promise<ProvisionedInstance> {
    const name = instanceName(contract.contract_id)
    throwIfAborted(signal, `waiting for the operator to provision ${name}`)
    return this.provisions.run(name, () => this.awaitOperator(contract, signal))
  }

  async terminate(claim: InstanceClaim): Promise<void> {
    const [made] = checkClaim(claim, this.machinesOf(claim.contractId))
    if (!made) return
    const {request, instance, externalId} = made
    this.store.recordTermination({external_id: externalId, contract_id: request.contract_id, instance, requested_at: Date.now()})
    this.store.remove(request.contract_id)
    const details = {contract_id: request.contract_id, external_id: externalId, ip_address: instance.ip_address}
    this.logger.warn(details, `contract ${request.contract_id} has ended: tear down machine ${externalId} (${instance.ip_address}) by hand`)
    await this.notify('terminate_requested', details)
  }

  async health(claim: InstanceClaim): Promise<InstanceHealth> {
    return healthOfClaim('machine', claim, async () => this.machinesOf(claim.contractId), async ({instance}): Promise<InstanceHealth> => {
      const reachable = await tcpConnects(instance.ip_address, instance.ssh_port, this.options.healthTimeoutMs ?? 3000)
      return reachable ? {status: 'healthy'} : {status: 'unhealthy', details: {reason: `nothing answers on ${instance.ip_address}:${instance.ssh_port}`}}
    })
  }

  /** The machine the operator reported for the contract, if any. */
  private machinesOf(contractId: string): {externalId: string; request: ManualRequest; instance: ManualInstance}[] {
    const request = this.store.read(contractId)
    return request?.status === 'completed' && request.instance ? [{externalId: request.instance.external_id, request, instance: request.instance}] : []
  }

  async find(contractId: string): Promise<ProvisionedInstance | undefined> {
    const request = this.store.read(contractId)
    return request?.status === 'completed' && request.instance ? toInstance(request, request.instance, false) : undefined
  }

  async list(): Promise<ListedInstance[]> {
    return this.store
      .all()
      .flatMap((request) => (request.status === 'completed' && request.instance ? [{externalId: request.instance.external_id, name: request.instance_name, contractId: request.contract_id}] : []))
  }

  async capacity(): Promise<Capacity | undefined> {
    return undefined
  }

  async verifySetup(): Promise<SetupCheck[]> {
    const checks: SetupCheck[] = []
    try {
      mkdirSync(this.store.requestsDir, {recursive: true, mode: 0o700})
      accessSync(this.store.requestsDir, constants.W_OK)
      checks.push({name: 'manual requests', ok: true, message: `requests are written to ${this.store.requestsDir}`})
    } catch (error) {
      checks.push({name: 'manual requests', ok: false, message: describeError(error), remedy: 'make [agent] state_dir writable by the agent'})
    }
    checks.push({
      name: 'manual notices',
      ok: true,
      message: this.options.webhookUrl ? `log lines and a webhook to ${new URL(this.options.webhookUrl).origin}` : 'log lines only (set [provisioner.manual] webhook_url for a webhook)',
    })
    const pending = this.store.all().filter((request) => request.status === 'pending').length
    if (pending > 0) checks.push({name: 'manual requests waiting', ok: true, message: `${pending} contract(s) wait for \`outpost contract complete\``})
    return checks
  }

  private async awaitOperator(contract: Contract, signal: AbortSignal): Promise<ProvisionedInstance> {
    const id = contract.contract_id
    if (!this.store.read(id)) {
      const request = this.store.create(contract)
      const details = {contract_id: id, cpu_cores: contract.cpu_cores, memory_mb: contract.memory_mb, storage_gb: contract.storage_gb, gpu_count: contract.gpu_count}
      this.logger.warn(
        details,
        `contract ${id} needs a machine (${contract.cpu_cores} cores, ${contract.memory_mb} MB, ${contract.storage_gb} GB): provision it by hand, then run ` +
          `\`outpost contract complete ${id} --ip <address> [--ssh-port 22] [--password-file <file>]\` or \`outpost contract fail ${id} --reason <why>\``,
      )
      await this.notify('provision_requested', {...details, instance_name: request.instance_name, ssh_pubkey: contract.ssh_pubkey})
    }
    // Nobody answering yet is never a failure: the wait has no end but the signal.
    return pollUntil(
      async () => {
        const answer = this.store.read(id) ?? this.store.create(contract)
        if (answer.status === 'completed' && answer.instance) return toInstance(answer, answer.instance, true)
        if (answer.status === 'failed') {
          // The failure is reported once; a retry by the marketplace makes a new request.
          this.store.remove(id)
          throw new ProvisionError(`the operator failed contract ${id}: ${answer.reason ?? 'no reason given'}`, {retryPossible: answer.retry_possible ?? false})
        }
        return undefined
      },
      {what: `waiting for the operator to provision ${instanceName(id)}`, timeoutMs: Number.POSITIVE_INFINITY, signal, initialMs: Math.min(250, this.options.pollIntervalMs), maxMs: this.options.pollIntervalMs},
    )
  }

  /** Posts a notice to the webhook; a webhook that fails costs a warning, never the contract. */
  private async notify(event: string, details: Record<string, unknown>): Promise<void> {
    if (!this.options.webhookUrl) return
    try {
      const response = await fetch(this.options.webhookUrl, {
        method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({event, ...details, at: Date.now()}),
        signal: AbortSignal.timeout(5000),
      })
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
    } catch (error) {
      this.logger.warn({event, error: describeError(error)}, `the manual webhook could not be notified`)
    }
  }
}
