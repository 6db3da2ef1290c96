import {lookup} from 'node:dns/promises'
import {readFileSync} from 'node:fs'
import {isIP} from 'node:net'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {execa} from 'execa'
import {z} from 'zod'

import type {Contract} from '../../core/api/schemas.js'
import {describeError} from '../../core/errors.js'
import {
  contractIdFromName,
  checkClaim,
  healthOfClaim,
  instanceName,
  isOutpostName,
  ProvisionError,
  throwIfAborted,
  toProvisionError,
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
import {provisionWithCleanup} from '../provision-with-cleanup.js'
import {elapsedSeconds, gresGpus, gresGpuTypes, NodeLine, parseJobs, runSlurm, SlurmCommandError, SQUEUE_FORMAT, SubmittedJob, type JobLine} from './commands.js'

/** What the backend needs, from `[provisioner.slurm]` (see the config schema for each setting); paths are absolute. */
export interface SlurmSettings {
  /** The Unix user renters' jobs run as (submitted with sbatch --uid); never the agent's own user, never root. */
  runAs: string
  /** The cluster's default partition when undefined. */
  partition?: string
  account?: string
  nodes: number
  tasks: number
  /** The partition's time limit when undefined. */
  timeLimit?: string
  /** The GPU type in the gres request (gpu:<type>:<count>). */
  gpuType?: string
  /** The job script template; the package's (DEFAULT_TEMPLATE) when undefined. */
  template?: string
  /** slurm.conf for the SLURM commands (SLURM_CONF); the system one when undefined. */
  slurmConf?: string
  sshPort: number
  startTimeoutMs: number
  commandTimeoutMs: number
}

/** The job script template shipped with the package; resolved the same from src/ (tests) and dist/ (the CLI). */
export const DEFAULT_TEMPLATE = fileURLToPath(new URL('../../../templates/slurm/outpost-job.sh', import.meta.url))

/** Job states in which the job holds or waits for its allocation. */
const LIVE_STATES = new Set(['PENDING', 'CONFIGURING', 'RUNNING', 'SUSPENDED', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING', 'COMPLETING', 'SIGNALING', 'STAGE_OUT'])
const WAITING_STATES = new Set(['PENDING', 'CONFIGURING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING'])
/** Pending reasons that no amount of waiting fixes: the job asks for more than the partition or account allows. */
const HOPELESS_REASONS = new Set(['PartitionConfig', 'PartitionNodeLimit', 'PartitionTimeLimit', 'BadConstraints', 'InvalidAccount', 'InvalidQOS', 'AccountNotAllowed', 'QOSNotAllowed'])
/** sbatch refusals that another submission of the same job won't change. */
const PERMANENT_SUBMIT_ERRORS = /Requested node configuration is not available|Invalid partition|Invalid account|Invalid qos|Invalid generic resource|Memory specification can not be satisfied|More processors requested than permitted|Requested time limit is invalid|Job violates accounting\/QOS policy|invalid partition specified/i
const TERMINATE_TIMEOUT_MS = 60_000

/** sbatch's refusals that no retry can fix (a bad partition, account or request) are final; the rest as for every backend. */
function slurmProvisionError(error: unknown, what: string): ProvisionError {
  if (error instanceof SlurmCommandError) return new ProvisionError(`${what}: ${error.message}`, {retryPossible: !PERMANENT_SUBMIT_ERRORS.test(error.stderr), cause: error})
  return toProvisionError(error, what)
}

/**
 * SLURM batch jobs, one per contract, submitted with the local `sbatch` from a job script template and named
 * `outpost-<contract>`, so a restarted agent finds them with `squeue --name`. A contract's machine is the job's first
 * allocated node; its CPUs, memory and GPUs become the job's cpus-per-task, mem and gres. Status comes from squeue
 * only: sacct needs slurmdbd, which many small clusters don't run. Submitting over SSH to a separate submit host is
 * not implemented: the agent runs where sbatch works.
 */
export class SlurmProvisioner implements Provisioner {
  readonly type = 'slurm'
  private readonly template: string
  private readonly provisions = new OneAtATime()

  /** The run_as user, looked up once it is first needed. */
  private jobUserLookup: Promise<JobUser> | undefined

  constructor(private readonly settings: SlurmSettings) {
    this.template = settings.template ?? DEFAULT_TEMPLATE
  }

  async provision(contract: Contract, signal: AbortSignal): Promise<ProvisionedInstance> {
    const name = instanceName(contract.contract_id)
    return provisionWithCleanup(this.provisions, name, signal, {
      attempt: () => this.provisionOnce(contract, name, signal),
      cleanUp: () => this.terminate({contractId: contract.contract_id}),
      toError: slurmProvisionError,
    })
  }

  async find(contractId: string, signal?: AbortSignal): Promise<ProvisionedInstance | undefined> {
    try {
      const job = (await this.jobsNamed(instanceName(contractId), signal)).find((item) => item.state === 'RUNNING')
      return job ? await this.describe(job, contractId, signal) : undefined
    } catch (error) {
      throw slurmProvisionError(error, `looking up the job of ${contractId}`)
    }
  }

  /** scancel the contract's live jobs, then wait until they have left their allocation. None live is success. */
  async terminate(claim: InstanceClaim, signal?: AbortSignal): Promise<void> {
    const name = instanceName(claim.contractId)
    try {
      const live = checkClaim(claim, await this.jobsOf(name, signal)).filter((job) => LIVE_STATES.has(job.state))
      if (live.length === 0) return
      const ids = new Set(live.map((job) => job.id))
      await this.slurm('scancel', [...ids], signal)
      await pollUntil(
        async () => ((await this.jobsOf(name, signal)).some((job) => ids.has(job.id) && LIVE_STATES.has(job.state)) ? undefined : true),
        {what: `job ${[...ids].join(', ')} (${name}) ending after scancel`, timeoutMs: TERMINATE_TIMEOUT_MS, signal, initialMs: 100},
      )
    } catch (error) {
      throw slurmProvisionError(error, `cancelling the job of ${claim.contractId}`)
    }
  }

  async health(claim: InstanceClaim, signal?: AbortSignal): Promise<InstanceHealth> {
    return healthOfClaim('job', claim, () => this.jobsOf(instanceName(claim.contractId), signal), (job): InstanceHealth => {
      if (job.state !== 'RUNNING') return {status: 'unhealthy', details: {state: job.state, reason: job.reason}}
      return {status: 'healthy', uptimeSeconds: elapsedSeconds(job.elapsed), details: {state: job.state, nodes: job.nodeList}}
    })
  }

  async list(signal?: AbortSignal): Promise<ListedInstance[]> {
    try {
      const jobs = parseJobs(await this.slurm('squeue', [`--user=${this.settings.runAs}`, '--noheader', `--format=${SQUEUE_FORMAT}`], signal))
      return jobs
        .filter((job) => isOutpostName(job.name) && LIVE_STATES.has(job.state))
        .map((job) => {
          const contractId = contractIdFromName(job.name)
          return {externalId: job.id, name: job.name, ...(contractId ? {contractId} : {})}
        })
    } catch (error) {
      throw slurmProvisionError(error, 'listing jobs')
    }
  }

  /** The partition's nodes, summed: CPUs, memory, GPUs from their GRES, and temporary disk. */
  async capacity(signal?: AbortSignal): Promise<Capacity> {
    try {
      const partition = this.settings.partition ? ['--partition', this.settings.partition] : []
      const stdout = await this.slurm('sinfo', ['--Node', '--noheader', '--format=%N|%c|%m|%G|%d', ...partition], signal)
      const nodes = new Map<string, z.output<typeof NodeLine>>()
      for (const line of stdout.split('\n').filter((text) => text.trim() !== '')) {
        const parsed = NodeLine.safeParse(line.trim())
        if (!parsed.success) throw new SlurmCommandError(`unexpected sinfo line "${line}"`, '')
        // A node in two partitions is listed twice.
        nodes.set(parsed.data.node, parsed.data)
      }
      const all = [...nodes.values()]
      const sum = (pick: (node: z.output<typeof NodeLine>) => number) => all.reduce((total, node) => total + pick(node), 0)
      return {
        cpuCores: sum((node) => node.cpus),
        memoryMb: sum((node) => node.memoryMb),
        storageGb: Math.floor(sum((node) => node.tmpDiskMb) / 1024),
        gpuCount: sum((node) => gresGpus(node.gres)),
        // The GRES types are the models a GPU contract can ask for: they are what `--gres=gpu:<type>:<n>` names.
        gpuModels: [...new Set(all.flatMap((node) => gresGpuTypes(node.gres)))].sort(),
      }
    } catch (error) {
      throw slurmProvisionError(error, 'reading cluster capacity')
    }
  }

  async verifySetup(signal?: AbortSignal): Promise<SetupCheck[]> {
    const checks: SetupCheck[] = []
    try {
      await this.slurm('scontrol', ['ping'], signal)
      checks.push({name: 'slurm controller', ok: true, message: 'slurmctld answers'})
    } catch (error) {
      checks.push({name: 'slurm controller', ok: false, message: describeError(error), remedy: 'check that slurmctld runs and munged is up; set [provisioner.slurm] slurm_conf if the config is not the system one'})
      return checks
    }
    try {
      const partitions = (await this.slurm('sinfo', ['--noheader', '--format=%P'], signal)).split('\n').map((line) => line.trim().replace(/\*$/, ''))
      const wanted = this.settings.partition
      checks.push(
        wanted === undefined || partitions.includes(wanted)
          ? {name: 'slurm partition', ok: true, message: wanted ? `partition ${wanted} exists` : `the default partition is used (${partitions.filter(Boolean).join(', ')})`}
          : {name: 'slurm partition', ok: false, message: `no partition ${wanted} (there are: ${partitions.filter(Boolean).join(', ')})`, remedy: 'fix [provisioner.slurm] partition'},
      )
    } catch (error) {
      checks.push({name: 'slurm partition', ok: false, message: describeError(error)})
    }
    checks.push(await this.jobUserCheck(signal))
    try {
      readFileSync(this.template, 'utf8')
      checks.push({name: 'slurm job template', ok: true, message: `${this.template} is readable`})
    } catch (error) {
      checks.push({name: 'slurm job template', ok: false, message: describeError(error), remedy: 'fix [provisioner.slurm] template'})
    }
    return checks
  }

  // --- provisioning steps ---

  private async provisionOnce(contract: Contract, name: string, signal: AbortSignal): Promise<ProvisionedInstance> {
    const existing = (await this.jobsNamed(name, signal)).find((job) => job.state !== 'COMPLETING')
    const jobId = existing?.id ?? (await this.submit(contract, name, signal))
    const running = await this.waitRunning(jobId, name, signal)
    return this.describe(running, contract.contract_id, signal)
  }

  /** The run_as user, checked: a job as the agent's own user could read its key, and root could do anything. */
  private async jobUser(signal?: AbortSignal): Promise<JobUser> {
    if (!this.jobUserLookup) {
      this.jobUserLookup = lookUpUser(this.settings.runAs, this.settings.commandTimeoutMs)
      // A failed lookup is not remembered: the directory service may answer later.
      this.jobUserLookup.catch(() => (this.jobUserLookup = undefined))
    }
    throwIfAborted(signal, `looking up user ${this.settings.runAs}`)
    const user = await this.jobUserLookup
    const problem = jobUserProblem(user, process.getuid?.())
    if (problem) throw new ProvisionError(`[provisioner.slurm] run_as: ${problem}`, {retryPossible: false})
    return user
  }

  private async jobUserCheck(signal?: AbortSignal): Promise<SetupCheck> {
    const name = 'slurm job user'
    try {
      const user = await this.jobUser(signal)
      return {name, ok: true, message: `renters' jobs run as ${user.name} (uid ${user.uid}), not as the agent; their output goes to ${user.home}`}
    } catch (error) {
      return {name, ok: false, message: describeError(error), remedy: JOB_USER_REMEDY}
    }
  }

  private async submit(contract: Contract, name: string, signal: AbortSignal): Promise<string> {
    if (contract.memory_mb < 1 || contract.cpu_cores < 1) throw new ProvisionError(`contract ${contract.contract_id} asks for no CPU or memory`, {retryPossible: false})
    const user = await this.jobUser(signal)
    const script = renderTemplate(readFileSync(this.template, 'utf8'), {
      job_name: name,
      partition: this.settings.partition,
      account: this.settings.account,
      nodes: String(this.settings.nodes),
      tasks: String(this.settings.tasks),
      cpus_per_task: String(contract.cpu_cores),
      memory_mb: String(contract.memory_mb),
      time_limit: this.settings.timeLimit,
      gres: contract.gpu_count > 0 ? `gpu:${this.settings.gpuType ? `${this.settings.gpuType}:` : ''}${contract.gpu_count}` : undefined,
      output: join(user.home, '%x-%j.out'),
    })
    // sbatch hands its environment to the job: the job user's own HOME and USER, never the agent's.
    const stdout = await this.slurm('sbatch', ['--parsable', `--uid=${user.uid}`, `--gid=${user.gid}`, `--chdir=${user.home}`], signal, {
      input: script,
      env: {
        HOME: user.home,
        USER: user.name,
        LOGNAME: user.name,
        OUTPOST_CONTRACT_ID: contract.contract_id,
        OUTPOST_INSTANCE: name,
        OUTPOST_SSH_PUBKEY: contract.ssh_pubkey.trim(),
      },
    })
    const parsed = SubmittedJob.safeParse(stdout)
    if (!parsed.success) throw new ProvisionError(`sbatch printed "${stdout.trim()}" where a job id was expected`, {retryPossible: true})
    return parsed.data
  }

  /** Polls until the job runs; a job that ends first, or waits for what the cluster can never give, fails. */
  private async waitRunning(id: string, name: string, signal: AbortSignal): Promise<JobLine> {
    try {
      return await pollUntil(
        async () => {
          const job = await this.job(id, signal)
          if (!job) throw new ProvisionError(`job ${id} (${name}) vanished from the queue before it ran`, {retryPossible: true})
          if (job.state === 'RUNNING') return job
          if (WAITING_STATES.has(job.state)) {
            if (HOPELESS_REASONS.has(job.reason)) {
              throw new ProvisionError(`job ${id} (${name}) can never start: pending with reason ${job.reason} (the contract asks for more than the partition allows)`, {retryPossible: false, category: 'no_capacity'})
            }
            return undefined
          }
          throw new ProvisionError(`job ${id} (${name}) ended ${job.state} before it ran${job.reason && job.reason !== 'None' ? ` (${job.reason})` : ''}`, {retryPossible: true})
        },
        {what: `job ${id} (${name}) starting`, timeoutMs: this.settings.startTimeoutMs, signal, initialMs: 100},
      )
    } catch (error) {
      if (error instanceof PollTimeoutError) throw new ProvisionError(`${error.message}: it is still pending`, {retryPossible: true, cause: error})
      throw error
    }
  }

  private async describe(job: JobLine, contractId: string, signal?: AbortSignal): Promise<ProvisionedInstance> {
    const nodes = (await this.slurm('scontrol', ['show', 'hostnames', job.nodeList], signal)).split('\n').map((line) => line.trim()).filter(Boolean)
    const first = nodes[0]
    if (!first) throw new ProvisionError(`job ${job.id} runs on no node ("${job.nodeList}")`, {retryPossible: true})
    const nodeInfo = await this.slurm('scontrol', ['show', 'node', first, '--oneliner'], signal)
    const nodeAddress = /(?:^|\s)NodeAddr=(\S+)/.exec(nodeInfo)?.[1] ?? first
    return {
      externalId: job.id,
      contractId,
      ipAddress: await addressOf(nodeAddress),
      sshPort: this.settings.sshPort,
      details: {provisioner: 'slurm', job_id: job.id, job_name: job.name, nodes, ...(this.settings.partition ? {partition: this.settings.partition} : {})},
    }
  }

  // --- lookups ---

  /** The live jobs of the job user named `name`. */
  private async jobsNamed(name: string, signal?: AbortSignal): Promise<JobLine[]> {
    return (await this.jobsOf(name, signal)).filter((job) => LIVE_STATES.has(job.state))
  }

  /** The job user's jobs named `name`, in any state the controller still remembers, as claim candidates. */
  private async jobsOf(name: string, signal?: AbortSignal): Promise<(JobLine & {externalId: string})[]> {
    const jobs = parseJobs(await this.slurm('squeue', [`--user=${this.settings.runAs}`, '--states=all', '--noheader', `--name=${name}`, `--format=${SQUEUE_FORMAT}`], signal))
    return jobs.filter((job) => job.name === name).map((job) => ({...job, externalId: job.id}))
  }

  /** One job in any state, while the controller still remembers it (MinJobAge after it ends); undefined after. */
  private async job(id: string, signal?: AbortSignal): Promise<JobLine | undefined> {
    try {
      return parseJobs(await this.slurm('squeue', ['--noheader', '--states=all', `--jobs=${id}`, `--format=${SQUEUE_FORMAT}`], signal)).find((job) => job.id === id)
    } catch (error) {
      if (error instanceof SlurmCommandError && /Invalid job id/i.test(error.stderr)) return undefined
      throw error
    }
  }

  private slurm(program: string, args: string[], signal?: AbortSignal, extra: {input?: string; env?: Record<string, string>} = {}): Promise<string> {
    return runSlurm(program, {
      args,
      input: extra.input,
      env: this.commandEnv(extra.env),
      timeoutMs: this.settings.commandTimeoutMs,
      signal,
    })
  }

  /** What SLURM's commands see: PATH, HOME and the locale, SLURM_CONF when configured, and the job's own variables. */
  private commandEnv(own: Record<string, string> = {}): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {}
    for (const key of ['PATH', 'HOME', 'USER', 'LANG', 'TZ']) if (process.env[key] !== undefined) env[key] = process.env[key]
    if (this.settings.slurmConf) env.SLURM_CONF = this.settings.slurmConf
    return {...env, ...own}
  }
}

/**
 * Fills `{{key}}` placeholders. A line whose placeholder has no value is left out, so optional directives
 * (`--account`, `--gres`) vanish instead of being sent empty. A value with a line break could add directives: refused.
 */
export function renderTemplate(template: string, values: Record<string, string | undefined>): string {
  const lines: string[] = []
  for (const line of template.split('\n')) {
    let keep = true
    const rendered = line.replaceAll(/\{\{(\w+)\}\}/g, (_match, key: string) => {
      if (!(key in values)) throw new ProvisionError(`the job template uses {{${key}}}, which outpost does not know`, {retryPossible: false})
      const value = values[key]
      if (value === undefined || value === '') {
        keep = false
        return ''
      }
      if (/[\r\n]/.test(value)) throw new ProvisionError(`the value of {{${key}}} has a line break`, {retryPossible: false})
      return value
    })
    if (keep) lines.push(rendered)
  }
  return lines.join('\n')
}

async function addressOf(host: string): Promise<string> {
  if (isIP(host)) return host
  try {
    return (await lookup(host, {family: 4})).address
  } catch (error) {
    throw new ProvisionError(`cannot resolve the address of node ${host}: ${describeError(error)}`, {retryPossible: true, cause: error})
  }
}

/** The Unix user renters' jobs run as. */
export interface JobUser {
  name: string
  uid: number
  gid: number
  home: string
}

const JOB_USER_REMEDY =
  'set [provisioner.slurm] run_as to an unprivileged user made for the jobs (useradd --create-home outpost-jobs), and run the agent as root: ' +
  'SLURM submits a job as another user only for root (sbatch --uid); keep the agent key readable by root alone'

/** Why jobs must not run as `user` under an agent of uid `agentUid`, or undefined when they may. */
export function jobUserProblem(user: JobUser, agentUid: number | undefined): string | undefined {
  if (user.uid === 0) return `${user.name} is root: renters' jobs must run as an unprivileged user`
  if (user.uid === agentUid) return `${user.name} is the agent's own user (uid ${user.uid}): a renter's job could read the agent key`
  if (agentUid !== 0) return `the agent runs as uid ${agentUid ?? 'unknown'}, and SLURM submits a job as ${user.name} only for root (sbatch --uid)`
  return undefined
}

/** `getent passwd <name>`: the user from the system's user database (files, LDAP, whatever NSS is set to). */
async function lookUpUser(name: string, timeoutMs: number): Promise<JobUser> {
  const result = await execa('getent', ['passwd', name], {timeout: timeoutMs, reject: false, extendEnv: false, env: {PATH: process.env.PATH}})
  if (result.exitCode === 2) throw new ProvisionError(`no Unix user ${name}`, {retryPossible: false})
  if (result.exitCode !== 0) throw new ProvisionError(`getent passwd ${name} failed: ${result.stderr.trim() || result.shortMessage}`, {retryPossible: true})
  const parsed = PasswdLine.safeParse(result.stdout.trim())
  if (!parsed.success) throw new ProvisionError(`getent passwd ${name} printed an entry that can't be read`, {retryPossible: true})
  return parsed.data
}

/** One passwd entry: `name:password:uid:gid:gecos:home:shell`. */
const PasswdLine = z
  .string()
  .transform((line) => line.split(':'))
  .pipe(z.tuple([z.string().min(1), z.string(), z.string().regex(/^\d+$/), z.string().regex(/^\d+$/), z.string(), z.string().startsWith('/'), z.string()]))
  .transform(([name, , uid, gid, , home]) => ({name, uid: Number(uid), gid: Number(gid), home}))
