import {accessSync, constants} from 'node:fs'
import {z} from 'zod'

import type {Contract} from '../../core/api/schemas.js'
import {describeError} from '../../core/errors.js'
import {
  checkClaim,
  healthOfClaim,
  instanceName,
  ProvisionError,
  type Capacity,
  type InstanceClaim,
  type InstanceHealth,
  type ListedInstance,
  type ProvisionedInstance,
  type Provisioner,
  type SetupCheck,
} from '../provisioner.js'
import {OneAtATime} from '../one-at-a-time.js'
import {runScript, stderrTail} from './run-script.js'

/** What the backend needs, from `[provisioner.script]`. */
export interface ScriptProvisionerOptions {
  /** Absolute path of the operator's executable. */
  command: string
  provisionTimeoutMs: number
  actionTimeoutMs: number
}

/** What the script prints for an instance (provision, and find when it has one). */
const ScriptInstance = z.strictObject({
  external_id: z.string().min(1),
  ip_address: z.string().min(1),
  ipv6_address: z.string().min(1).optional(),
  ssh_port: z.number().int().min(1).max(65_535).default(22),
  credentials: z.record(z.string(), z.string()).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
})

/** The answer of each action on stdout. A failing script may print `{"error": "...", "retry_possible": false}`. */
export const ScriptAnswers = {
  provision: ScriptInstance,
  find: z.strictObject({instance: ScriptInstance.nullable()}),
  terminate: z.strictObject({terminated: z.literal(true)}),
  health: z.strictObject({
    status: z.enum(['healthy', 'unhealthy', 'unknown']),
    uptime_seconds: z.number().nonnegative().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
  list: z.strictObject({
    instances: z.array(z.strictObject({external_id: z.string().min(1), name: z.string().min(1), contract_id: z.string().min(1).optional()})),
  }),
  capacity: z.strictObject({
    capacity: z
      .strictObject({cpu_cores: z.number().int().nonnegative(), memory_mb: z.number().int().nonnegative(), storage_gb: z.number().int().nonnegative(), gpu_count: z.number().int().nonnegative()})
      .nullable(),
  }),
  verify: z.strictObject({
    checks: z.array(z.strictObject({name: z.string().min(1), ok: z.boolean(), message: z.string(), remedy: z.string().optional()})),
  }),
} as const
type Action = keyof typeof ScriptAnswers

const ScriptFailure = z.object({error: z.string().min(1), retry_possible: z.boolean().optional()})

function toInstance(contractId: string, answer: z.infer<typeof ScriptInstance>): ProvisionedInstance {
  return {
    externalId: answer.external_id,
    contractId,
    ipAddress: answer.ip_address,
    ...(answer.ipv6_address ? {ipv6Address: answer.ipv6_address} : {}),
    sshPort: answer.ssh_port,
    ...(answer.credentials ? {credentials: answer.credentials} : {}),
    ...(answer.details ? {details: answer.details} : {}),
  }
}

/**
 * The operator's own executable as the backend: called `<command> <action>` with a JSON request on stdin, it prints
 * one JSON answer on stdout (parsed against ScriptAnswers). Actions: provision, find, terminate, health, list,
 * capacity, verify. The script must make provision idempotent by the instance name it is given, and clean up after
 * itself when a provision fails; templates/scripts/ has an example.
 */
export class ScriptProvisioner implements Provisioner {
  readonly type = 'script'
  /** One provision per contract at a time, so a script never sees the same contract twice at once. */
  private readonly provisions = new OneAtATime()

  constructor(private readonly options: ScriptProvisionerOptions) {}

  async provision(contract: Contract, signal: AbortSignal): Promise<ProvisionedInstance> {
    const name = instanceName(contract.contract_id)
    return this.provisions.run(name, async () => toInstance(contract.contract_id, await this.call('provision', {instance_name: name, contract}, this.options.provisionTimeoutMs, signal)))
  }

  /** The script's terminate of the instance its find gives for the contract; the script is told all three names. */
  async terminate(claim: InstanceClaim, signal?: AbortSignal): Promise<void> {
    for (const found of checkClaim(claim, await this.instancesOf(claim.contractId, signal))) {
      await this.call('terminate', this.target(claim.contractId, found.externalId), this.options.actionTimeoutMs, signal)
    }
  }

  async health(claim: InstanceClaim, signal?: AbortSignal): Promise<InstanceHealth> {
    return healthOfClaim('instance', claim, () => this.instancesOf(claim.contractId, signal), async ({externalId}): Promise<InstanceHealth> => {
      const answer = await this.call('health', this.target(claim.contractId, externalId), this.options.actionTimeoutMs, signal)
      return {
        status: answer.status,
        ...(answer.uptime_seconds === undefined ? {} : {uptimeSeconds: answer.uptime_seconds}),
        ...(answer.details ? {details: answer.details} : {}),
      }
    })
  }

  /** The contract's instance as the script's find gives it: the script alone knows its machines. */
  private async instancesOf(contractId: string, signal?: AbortSignal): Promise<ProvisionedInstance[]> {
    const found = await this.find(contractId, signal)
    return found ? [found] : []
  }

  private target(contractId: string, externalId: string): Record<string, string> {
    return {external_id: externalId, contract_id: contractId, instance_name: instanceName(contractId)}
  }

  async find(contractId: string, signal?: AbortSignal): Promise<ProvisionedInstance | undefined> {
    const answer = await this.call('find', {instance_name: instanceName(contractId), contract_id: contractId}, this.options.actionTimeoutMs, signal)
    return answer.instance ? toInstance(contractId, answer.instance) : undefined
  }

  async list(signal?: AbortSignal): Promise<ListedInstance[]> {
    const answer = await this.call('list', {}, this.options.actionTimeoutMs, signal)
    return answer.instances.map((item) => ({externalId: item.external_id, name: item.name, ...(item.contract_id ? {contractId: item.contract_id} : {})}))
  }

  async capacity(signal?: AbortSignal): Promise<Capacity | undefined> {
    const {capacity} = await this.call('capacity', {}, this.options.actionTimeoutMs, signal)
    return capacity ? {cpuCores: capacity.cpu_cores, memoryMb: capacity.memory_mb, storageGb: capacity.storage_gb, gpuCount: capacity.gpu_count} : undefined
  }

  async verifySetup(signal?: AbortSignal): Promise<SetupCheck[]> {
    try {
      accessSync(this.options.command, constants.X_OK)
    } catch (error) {
      return [{name: 'provisioner script', ok: false, message: `${this.options.command}: ${describeError(error)}`, remedy: 'set [provisioner.script] command to an executable file (chmod +x)'}]
    }
    const checks: SetupCheck[] = [{name: 'provisioner script', ok: true, message: `${this.options.command} is executable`}]
    try {
      const answer = await this.call('verify', {}, this.options.actionTimeoutMs, signal)
      return [...checks, ...answer.checks.map((check) => ({...check, name: `script: ${check.name}`}))]
    } catch (error) {
      return [...checks, {name: 'script verify', ok: false, message: describeError(error), remedy: 'run the script by hand: echo {} | <command> verify'}]
    }
  }

  private async call<A extends Action>(action: A, request: Record<string, unknown>, timeoutMs: number, signal?: AbortSignal): Promise<z.infer<(typeof ScriptAnswers)[A]>> {
    const what = `script ${this.options.command} ${action}`
    const result = await runScript({command: this.options.command, action, input: {action, ...request}, timeoutMs, signal})
    let output: unknown
    const text = result.stdout.trim()
    try {
      output = text === '' ? undefined : JSON.parse(text)
    } catch {
      output = undefined
    }
    if (result.exitCode !== 0) {
      const failure = ScriptFailure.safeParse(output)
      const reason = failure.success ? failure.data.error : `exited with ${result.exitCode === null ? 'a signal' : `code ${result.exitCode}`}`
      throw new ProvisionError(`${what} failed: ${reason}${stderrTail(result.stderr)}`, {retryPossible: failure.success ? (failure.data.retry_possible ?? true) : true})
    }
    if (output === undefined) {
      const shown = text === '' ? 'nothing' : `"${text.slice(0, 120)}${text.length > 120 ? '…' : ''}"`
      throw new ProvisionError(`${what} printed ${shown} where one JSON object was expected${stderrTail(result.stderr)}`, {retryPossible: false})
    }
    const parsed = ScriptAnswers[action].safeParse(output)
    if (!parsed.success) {
      const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(answer)'}: ${issue.message}`).join('; ')
      throw new ProvisionError(`${what} printed an answer that does not fit: ${problems}`, {retryPossible: false})
    }
    return parsed.data as z.infer<(typeof ScriptAnswers)[A]>
  }
}
