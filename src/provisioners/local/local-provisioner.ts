import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statfsSync} from 'node:fs'
import {cpus, totalmem} from 'node:os'
import {delimiter, isAbsolute, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'
import {z} from 'zod'

import type {Contract} from '../../core/api/schemas.js'
import {describeError} from '../../core/errors.js'
import {fsyncDirectory, writeFileAtomic} from '../../core/files.js'
import {
  checkClaim,
  contractIdFromName,
  healthOfClaim,
  instanceName,
  ProvisionAbortedError,
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
import {pollUntil, PollTimeoutError} from '../poll.js'
import {tcpConnects} from '../tcp.js'
import {findMarkedProcesses, freePort, INSTANCE_MARKER, isInstanceProcess, killGroup} from './processes.js'

/**
 * The built-in workload. Resolved against the package root so that it is the compiled script under dist/ whether this
 * module runs from dist/ (the CLI) or from src/ (tests under tsx): both sit three levels below the root.
 */
export const BANNER_SERVICE = fileURLToPath(new URL('../../../dist/provisioners/local/banner-service.js', import.meta.url))

export interface LocalProvisionerOptions {
  /** The agent's state dir; instance records live in `<stateDir>/local` unless `instancesDir` names another place. */
  stateDir: string
  /** A directory agents on this host share, so one can find (and take over) the instances another made. */
  instancesDir?: string
  /** Workload command; it gets PORT. Default: the built-in banner service. */
  command?: readonly string[]
  startupTimeoutMs?: number
  /** SIGTERM to SIGKILL on terminate. */
  killGraceMs?: number
}

/** One instance's record (the "pid file"), mode 0600 because it holds the instance's password. */
const InstanceRecord = z.object({
  contract_id: z.string().min(1),
  name: z.string().min(1),
  port: z.number().int().min(1).max(65_535),
  /** null between "about to spawn" and "spawned": a crash there is found again by the process marker. */
  pid: z.number().int().positive().nullable(),
  password: z.string().min(1),
  started_at: z.number().int().nonnegative(),
})
type InstanceRecord = z.infer<typeof InstanceRecord>

const SPAWN_ATTEMPTS = 3

/** Environment variables of the agent that a workload must never inherit. */
const PRIVATE_ENV = /^(OUTPOST_|npm_)/

export class LocalProvisioner implements Provisioner {
  readonly type = 'local'
  readonly dir: string
  private readonly command: readonly string[]
  private readonly startupTimeoutMs: number
  private readonly killGraceMs: number
  /** One operation at a time per instance, so a health restart never races a terminate. */
  private readonly oneAtATime = new OneAtATime()

  constructor(options: LocalProvisionerOptions) {
    this.dir = options.instancesDir ?? join(options.stateDir, 'local')
    this.command = options.command ?? [process.execPath, BANNER_SERVICE]
    this.startupTimeoutMs = options.startupTimeoutMs ?? 10_000
    this.killGraceMs = options.killGraceMs ?? 3000
    mkdirSync(this.dir, {recursive: true, mode: 0o700})
  }

  async provision(contract: Contract, signal: AbortSignal): Promise<ProvisionedInstance> {
    const name = instanceName(contract.contract_id)
    return this.oneAtATime.run(name, async () => {
      const existing = this.adopt(name)
      if (existing && existing.pid !== null) return this.describe(existing)
      const password = existing?.password ?? randomBytes(18).toString('base64url')
      const record = await this.spawnReady(contract.contract_id, name, password, signal)
      return this.describe(record)
    })
  }

  async find(contractId: string): Promise<ProvisionedInstance | undefined> {
    const name = instanceName(contractId)
    return this.oneAtATime.run(name, async () => {
      const record = this.adopt(name)
      return record && record.pid !== null ? this.describe(record) : undefined
    })
  }

  async terminate(claim: InstanceClaim): Promise<void> {
    const name = nameOf(claim.contractId)
    await this.oneAtATime.run(name, async () => {
      const record = this.read(name)
      const pids = record?.pid ? [record.pid] : findMarkedProcesses(name)
      checkClaim(claim, record || pids.length > 0 ? [{externalId: name}] : [])
      for (const pid of pids) if (isInstanceProcess(pid, name)) await killGroup(pid, name, this.killGraceMs)
      this.remove(name)
    })
  }

  /** TCP connect to the workload. A workload that died is started again on its port (that is the supervision). */
  async health(claim: InstanceClaim): Promise<InstanceHealth> {
    const name = nameOf(claim.contractId)
    const candidates = async () => {
      const record = this.read(name)
      return record ? [{externalId: name, record}] : []
    }
    return this.oneAtATime.run(name, () => healthOfClaim('instance', claim, candidates, ({record}) => this.judgeHealth(name, record)))
  }

  private async judgeHealth(name: string, record: InstanceRecord): Promise<InstanceHealth> {
    const uptimeSeconds = Math.max(0, Math.floor((Date.now() - record.started_at) / 1000))
    if (record.pid !== null && isInstanceProcess(record.pid, name)) {
      const connects = await tcpConnects('127.0.0.1', record.port, 2000)
      return connects ? {status: 'healthy', uptimeSeconds} : {status: 'unhealthy', uptimeSeconds, details: {reason: `port ${record.port} refuses connections`}}
    }
    try {
      await this.spawnReady(record.contract_id, name, record.password, AbortSignal.timeout(this.startupTimeoutMs * 2), record.port)
      return {status: 'unhealthy', uptimeSeconds: 0, details: {reason: 'the workload had exited and was restarted'}}
    } catch (error) {
      return {status: 'unhealthy', details: {reason: `the workload exited and did not restart: ${describeError(error)}`}}
    }
  }

  async list(): Promise<ListedInstance[]> {
    return this.records().map((record) => ({externalId: record.name, contractId: record.contract_id, name: record.name}))
  }

  private records(): InstanceRecord[] {
    return readdirSync(this.dir)
      .filter((file) => file.endsWith('.json') && contractIdFromName(file.slice(0, -5)) !== undefined)
      .map((file) => this.read(file.slice(0, -5)))
      .filter((record): record is InstanceRecord => record !== undefined)
  }

  async verifySetup(): Promise<SetupCheck[]> {
    const checks: SetupCheck[] = []
    try {
      accessSync(this.dir, constants.W_OK)
      checks.push({name: 'local state dir', ok: true, message: `${this.dir} is writable`})
    } catch {
      checks.push({name: 'local state dir', ok: false, message: `${this.dir} is not writable`, remedy: `check the owner and mode of ${this.dir}`})
    }
    const executable = this.command[0] ?? ''
    const found = resolveExecutable(executable)
    checks.push(
      found
        ? {name: 'workload command', ok: true, message: `${found} is executable`}
        : {name: 'workload command', ok: false, message: `${executable} is not an executable file or on PATH`, remedy: 'fix [provisioner.local] command'},
    )
    if (this.command[1] === BANNER_SERVICE && !existsSync(BANNER_SERVICE)) {
      checks.push({name: 'banner service', ok: false, message: `${BANNER_SERVICE} is missing`, remedy: 'build the package: npm run build'})
    }
    return checks
  }

  async capacity(): Promise<Capacity> {
    const disk = statfsSync(this.dir)
    return {
      cpuCores: cpus().length,
      memoryMb: Math.floor(totalmem() / 1024 / 1024),
      storageGb: Math.floor((disk.bavail * disk.bsize) / 1024 ** 3),
      gpuCount: 0,
    }
  }

  private recordPath(name: string): string {
    return join(this.dir, `${name}.json`)
  }

  private logPath(name: string): string {
    return join(this.dir, `${name}.log`)
  }

  private read(name: string): InstanceRecord | undefined {
    let text: string
    try {
      text = readFileSync(this.recordPath(name), 'utf8')
    } catch {
      return undefined
    }
    try {
      const parsed = InstanceRecord.safeParse(JSON.parse(text))
      return parsed.success ? parsed.data : undefined
    } catch {
      return undefined
    }
  }

  private write(record: InstanceRecord): void {
    writeFileAtomic(this.recordPath(record.name), JSON.stringify(record) + '\n', 0o600)
  }

  private remove(name: string): void {
    rmSync(this.recordPath(name), {force: true})
    rmSync(this.logPath(name), {force: true})
    fsyncDirectory(this.dir)
  }

  /**
   * The live record of `name`, if any: a record whose process is still ours, or one left between "about to spawn" and
   * "spawned" whose process is found by its marker. A record of a dead process keeps only its password.
   */
  private adopt(name: string): InstanceRecord | undefined {
    const record = this.read(name)
    if (!record) return undefined
    if (record.pid !== null && isInstanceProcess(record.pid, name)) return record
    const [pid] = findMarkedProcesses(name)
    const adopted = {...record, pid: pid ?? null}
    if (pid !== undefined) this.write(adopted)
    return adopted
  }

  private describe(record: InstanceRecord): ProvisionedInstance {
    return {
      externalId: record.name,
      contractId: record.contract_id,
      ipAddress: '127.0.0.1',
      sshPort: record.port,
      credentials: {username: 'outpost', password: record.password},
      details: {provisioner: 'local', pid: record.pid, protocol: 'tcp-banner'},
    }
  }

  /** Starts the workload and waits until its port accepts connections; a port lost to another process is retried. */
  private async spawnReady(contractId: string, name: string, password: string, signal: AbortSignal, fixedPort?: number): Promise<InstanceRecord> {
    let lastError: unknown
    for (let attempt = 0; attempt < (fixedPort ? 1 : SPAWN_ATTEMPTS); attempt++) {
      if (signal.aborted) break
      const port = fixedPort ?? (await this.unrecordedPort())
      const record: InstanceRecord = {contract_id: contractId, name, port, pid: null, password, started_at: Date.now()}
      this.write(record)
      try {
        return await this.startProcess(record, signal)
      } catch (error) {
        lastError = error
        if (signal.aborted) break
      }
    }
    this.remove(name)
    if (signal.aborted) throw new ProvisionAbortedError(name, {cause: signal.reason})
    throw lastError instanceof ProvisionError ? lastError : new ProvisionError(`${name}: ${describeError(lastError)}`, {retryPossible: true, cause: lastError})
  }

  private async startProcess(record: InstanceRecord, signal: AbortSignal): Promise<InstanceRecord> {
    const [executable, ...args] = this.command
    if (!executable) throw new ProvisionError('[provisioner.local] command is empty', {retryPossible: false})
    const log = openSync(this.logPath(record.name), 'a', 0o600)
    let exited: string | undefined
    let child
    try {
      child = spawn(executable, args, {
        // Its own process group, so terminate() reaches everything it starts and the agent dying does not take it down.
        detached: true,
        stdio: ['ignore', log, log],
        env: workloadEnv({PORT: String(record.port), [INSTANCE_MARKER]: record.name, OUTPOST_CONTRACT_ID: record.contract_id, OUTPOST_PASSWORD: record.password}),
      })
    } finally {
      closeSync(log)
    }
    child.once('error', (error) => (exited = error.message))
    child.once('exit', (code, signalName) => (exited ??= signalName ? `killed by ${signalName}` : `exited with code ${code}`))
    child.unref()
    if (child.pid === undefined) {
      await sleep(0)
      throw new ProvisionError(`cannot start ${executable}: ${exited ?? 'spawn failed'}`, {retryPossible: false})
    }
    const started = {...record, pid: child.pid}
    this.write(started)

    try {
      await pollUntil(
        async () => {
          if (exited !== undefined) throw new ProvisionError(`the workload ${exited} before accepting connections${this.logTail(record.name)}`, {retryPossible: true})
          return (await tcpConnects('127.0.0.1', record.port, 500)) ? true : undefined
        },
        {what: `the workload of ${record.name} accepting connections`, timeoutMs: this.startupTimeoutMs, signal, initialMs: 30},
      )
      return started
    } catch (error) {
      // At once, no grace: a workload that never became ready serves nobody, and one left dying while the agent is
      // killed would be found alive by the next run, adopted, and gone a moment later.
      await killGroup(started.pid, record.name, 0)
      if (error instanceof PollTimeoutError) {
        throw new ProvisionError(`the workload did not accept connections on port ${record.port} within ${this.startupTimeoutMs / 1000} s`, {retryPossible: true})
      }
      throw error
    }
  }

  /**
   * A free port that no instance record names: a workload that died is restarted on its own port, which must not have
   * been handed to another instance meanwhile.
   */
  private async unrecordedPort(): Promise<number> {
    const recorded = new Set(this.records().map((record) => record.port))
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = await freePort()
      if (!recorded.has(port)) return port
    }
    throw new ProvisionError('no free TCP port that no instance record names', {retryPossible: true})
  }

  private logTail(name: string): string {
    try {
      const tail = readFileSync(this.logPath(name), 'utf8').trim().split('\n').slice(-3).join(' | ')
      return tail ? `: ${tail}` : ''
    } catch {
      return ''
    }
  }
}

/** The instance name of a contract; the id must be a contract id, since the name becomes a file name. */
function nameOf(contractId: string): string {
  const name = instanceName(contractId)
  if (contractIdFromName(name) === undefined) throw new ProvisionError(`"${contractId}" is not a contract id`, {retryPossible: false})
  return name
}

function workloadEnv(own: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) if (!PRIVATE_ENV.test(key)) env[key] = value
  return {...env, ...own}
}

function resolveExecutable(executable: string): string | undefined {
  const candidates = isAbsolute(executable) || executable.includes('/') ? [executable] : (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, executable))
  return candidates.find((candidate) => {
    try {
      accessSync(candidate, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}
