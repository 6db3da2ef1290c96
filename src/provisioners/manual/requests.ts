import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {z} from 'zod'

import {Contract, ContractId} from '../../core/api/schemas.js'
import {ExitCode, UserError} from '../../core/errors.js'
import {writeFileAtomic} from '../../core/files.js'
import {instanceName} from '../provisioner.js'

/** What the operator made by hand, as `outpost contract complete` records it. */
export const ManualInstance = z.strictObject({
  external_id: z.string().min(1),
  ip_address: z.string().min(1),
  ipv6_address: z.string().min(1).optional(),
  ssh_port: z.number().int().min(1).max(65_535),
  credentials: z.record(z.string(), z.string()).optional(),
})
export type ManualInstance = z.infer<typeof ManualInstance>

/** One contract's request, a file in `<state_dir>/manual/requests/` (mode 0600: it may hold a password). */
export const ManualRequest = z.strictObject({
  contract_id: ContractId,
  instance_name: z.string().min(1),
  status: z.enum(['pending', 'completed', 'failed']),
  requested_at: z.number().int().nonnegative(),
  answered_at: z.number().int().nonnegative().optional(),
  contract: Contract,
  instance: ManualInstance.optional(),
  reason: z.string().min(1).optional(),
  retry_possible: z.boolean().optional(),
})
export type ManualRequest = z.infer<typeof ManualRequest>

/** A machine the operator is asked to tear down, a file in `<state_dir>/manual/terminations/`. */
export const ManualTermination = z.strictObject({
  external_id: z.string().min(1),
  contract_id: z.string().min(1),
  instance: ManualInstance,
  requested_at: z.number().int().nonnegative(),
})
export type ManualTermination = z.infer<typeof ManualTermination>

/** The files through which the manual provisioner and the operator's `outpost contract` commands talk. */
export class ManualRequestStore {
  readonly requestsDir: string
  readonly terminationsDir: string

  constructor(stateDir: string) {
    this.requestsDir = join(stateDir, 'manual', 'requests')
    this.terminationsDir = join(stateDir, 'manual', 'terminations')
  }

  read(contractId: string): ManualRequest | undefined {
    const file = this.requestFile(contractId)
    if (!existsSync(file)) return undefined
    const parsed = ManualRequest.safeParse(JSON.parse(readFileSync(file, 'utf8')))
    if (!parsed.success) {
      throw new UserError(`${file} is not a valid manual request: ${parsed.error.issues[0]?.message ?? 'invalid'}`, {
        code: 'manual_request_invalid',
        suggestion: 'delete the file, and the agent asks for the machine again',
      })
    }
    return parsed.data
  }

  all(): ManualRequest[] {
    if (!existsSync(this.requestsDir)) return []
    return readdirSync(this.requestsDir)
      .filter((file) => file.endsWith('.json') && ContractId.safeParse(file.slice(0, -'.json'.length)).success)
      .flatMap((file) => this.read(file.slice(0, -'.json'.length)) ?? [])
  }

  create(contract: Contract): ManualRequest {
    const request: ManualRequest = {
      contract_id: contract.contract_id,
      instance_name: instanceName(contract.contract_id),
      status: 'pending',
      requested_at: Date.now(),
      contract,
    }
    this.write(request)
    return request
  }

  /** `outpost contract complete`: the machine is ready. */
  complete(contractId: string, instance: ManualInstance): ManualRequest {
    const request = this.pending(contractId)
    const completed: ManualRequest = {...request, status: 'completed', answered_at: Date.now(), instance: ManualInstance.parse(instance)}
    this.write(completed)
    return completed
  }

  /** `outpost contract fail`: the operator can't (or won't) provide the machine. */
  fail(contractId: string, reason: string, retryPossible: boolean): ManualRequest {
    const request = this.pending(contractId)
    const failed: ManualRequest = {...request, status: 'failed', answered_at: Date.now(), reason, retry_possible: retryPossible}
    this.write(failed)
    return failed
  }

  remove(contractId: string): void {
    rmSync(this.requestFile(contractId), {force: true})
  }

  recordTermination(termination: ManualTermination): void {
    mkdirSync(this.terminationsDir, {recursive: true, mode: 0o700})
    writeFileAtomic(join(this.terminationsDir, `${termination.contract_id}.json`), JSON.stringify(termination, null, 2) + '\n', 0o600)
  }

  private pending(contractId: string): ManualRequest {
    const request = this.read(contractId)
    if (!request) {
      throw new UserError(`no manual request for contract ${contractId}`, {
        code: 'manual_request_missing',
        suggestion: `check the contract id; requests are in ${this.requestsDir}`,
        exit: ExitCode.usage,
      })
    }
    if (request.status !== 'pending') {
      throw new UserError(`contract ${contractId} was already answered (${request.status})`, {
        code: 'manual_request_answered',
        exit: ExitCode.failed,
        suggestion: 'an answer is final: the agent has reported it (the renter cancels a machine that is not what was asked)',
      })
    }
    return request
  }

  private requestFile(contractId: string): string {
    if (!ContractId.safeParse(contractId).success) {
      throw new UserError(`"${contractId}" is not a contract id (32 hex characters)`, {code: 'usage', exit: ExitCode.usage, suggestion: `pass the id the agent logged with the request (requests are in ${this.requestsDir})`})
    }
    return join(this.requestsDir, `${contractId}.json`)
  }

  private write(request: ManualRequest): void {
    mkdirSync(this.requestsDir, {recursive: true, mode: 0o700})
    writeFileAtomic(this.requestFile(request.contract_id), JSON.stringify(request, null, 2) + '\n', 0o600)
  }
}
