import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'
import {z} from 'zod'

import type {BenchmarkRun, BenchmarkSettings} from '../bench/run.js'
import {listDelegations} from '../core/api/main-key.js'
import type {ProviderSession} from '../core/api/session.js'
import {describeError} from '../core/errors.js'
import {writeFileAtomic} from '../core/files.js'
import {claimPendingRewards, stakeInfo} from '../stake/stake.js'
import {pruneArchives} from './archive.js'
import type {AgentLog} from './logger.js'
import type {AgentMetrics} from './metrics.js'

/**
 * The daemon's scheduled chores, beside the agent's own loops: reading its delegation's expiry (for the metric and a
 * warning), pruning the evidence archives past `[agent] archive_days`, and, when configured, claiming stake rewards
 * (`auto_claim`, with the main key) and running a submitted benchmark (`benchmark_every`, with the agent key). When
 * the two scheduled ones last ran is kept in the state dir, so a restart does not run them again before they are due.
 */

export type ChoreName = 'delegation_check' | 'archive_prune' | 'auto_claim' | 'benchmark'

export interface ChoreSettings {
  /** 0: the archives are kept forever. */
  archiveDays: number
  /** With the main key's session; undefined: off. */
  autoClaim?: {everyMs: number; session: ProviderSession}
  /** With the agent key's session; undefined: off. */
  benchmark?: {everyMs: number; settings: BenchmarkSettings}
}

export interface ChoresOptions {
  /** The agent key's session. */
  session: ProviderSession
  agentPubkey: string
  stateDir: string
  log: AgentLog
  metrics: AgentMetrics
  settings: ChoreSettings
}

const HOUR_MS = 3_600_000
/** A delegation that ends within this time is warned about (as `doctor --verify-api` does). */
const EXPIRY_WARNING_MS = 7 * 24 * HOUR_MS
/** A chore that failed is tried again after this long, or its own interval when that is shorter. */
const RETRY_MS = 15 * 60_000
/** setTimeout's longest delay; a longer wait is made of several. */
const MAX_TIMER_MS = 2 ** 31 - 1

const ChoreState = z.object({last_run: z.partialRecord(z.enum(['auto_claim', 'benchmark']), z.number().int().nonnegative())})

interface Chore {
  name: ChoreName
  everyMs: number
  /** Its last run is kept across restarts. */
  persistent: boolean
  run(signal: AbortSignal): Promise<Record<string, unknown>>
}

export class Chores {
  private readonly stopping = new AbortController()
  private readonly loops: Promise<void>[] = []
  private readonly lastRun: Partial<Record<ChoreName, number>>
  private readonly stateFile: string

  constructor(private readonly options: ChoresOptions) {
    this.stateFile = join(options.stateDir, 'chores.json')
    this.lastRun = this.readState()
  }

  /** The chores this configuration asks for. */
  chores(): Chore[] {
    const {settings} = this.options
    const list: Chore[] = [{name: 'delegation_check', everyMs: HOUR_MS, persistent: false, run: (signal) => this.checkDelegation(signal)}]
    if (settings.archiveDays > 0) list.push({name: 'archive_prune', everyMs: 6 * HOUR_MS, persistent: false, run: async () => this.prune()})
    const {autoClaim, benchmark} = settings
    if (autoClaim) list.push({name: 'auto_claim', everyMs: autoClaim.everyMs, persistent: true, run: () => this.claim(autoClaim.session)})
    if (benchmark) list.push({name: 'benchmark', everyMs: benchmark.everyMs, persistent: true, run: () => this.benchmark(benchmark.settings)})
    return list
  }

  start(): void {
    for (const chore of this.chores()) this.loops.push(this.loop(chore))
  }

  async stop(): Promise<void> {
    this.stopping.abort()
    await Promise.all(this.loops)
  }

  private async loop(chore: Chore): Promise<void> {
    const {signal} = this.stopping
    let retryAt: number | undefined
    while (!signal.aborted) {
      const due = retryAt ?? (this.lastRun[chore.name] ?? 0) + chore.everyMs
      if (due > Date.now()) {
        if (!(await sleep(Math.min(MAX_TIMER_MS, due - Date.now()), signal))) return
        continue
      }
      try {
        const details = await chore.run(signal)
        this.options.metrics.chores.inc({chore: chore.name, result: 'ok'})
        this.options.log.info({chore: chore.name, ...details}, `${chore.name.replace('_', ' ')} done`)
        retryAt = undefined
        this.lastRun[chore.name] = Date.now()
        if (chore.persistent) this.writeState()
      } catch (error) {
        if (signal.aborted) return
        this.options.metrics.chores.inc({chore: chore.name, result: 'failed'})
        retryAt = Date.now() + Math.min(RETRY_MS, chore.everyMs)
        this.options.log.warn({chore: chore.name, err: describeError(error), retry_at: new Date(retryAt).toISOString()}, `${chore.name.replace('_', ' ')} failed: trying again later`)
      }
    }
  }

  private async checkDelegation(signal: AbortSignal): Promise<Record<string, unknown>> {
    const {session, agentPubkey, metrics, log} = this.options
    const own = (await listDelegations(session.client, session.providerPubkey)).find((delegation) => delegation.agent_pubkey === agentPubkey)
    signal.throwIfAborted()
    const expiresAt = own?.expires_at ?? null
    metrics.delegationExpiry.set(expiresAt === null ? Infinity : expiresAt / 1000)
    if (expiresAt !== null && expiresAt - Date.now() <= EXPIRY_WARNING_MS) {
      log.warn({expires_at: new Date(expiresAt).toISOString()}, "the agent key's delegation ends within 7 days: renew it with `outpost register --expires-in 90d` or `outpost keys rotate`")
    }
    return {expires_at: expiresAt === null ? 'never' : new Date(expiresAt).toISOString()}
  }

  private prune(): Record<string, unknown> {
    const removed = pruneArchives(this.options.stateDir, this.options.settings.archiveDays * 24 * HOUR_MS)
    return {removed: removed.length, archive_days: this.options.settings.archiveDays}
  }

  private async claim(session: ProviderSession): Promise<Record<string, unknown>> {
    const before = await stakeInfo(session)
    if (before.rewards_pending === '0') return {claimed: '0'}
    const outcome = await claimPendingRewards(session)
    return {claimed: outcome.claimed, staked: outcome.stake.staked}
  }

  private async benchmark(settings: BenchmarkSettings): Promise<Record<string, unknown>> {
    // Loaded when the chore first runs: an agent that never benchmarks never loads the benchmarks.
    const {planBenchmark} = await import('../bench/run.js')
    const plan = planBenchmark(this.options.session, settings)
    let run: BenchmarkRun = plan.start
    for (const task of plan.tasks) {
      this.stopping.signal.throwIfAborted()
      run = {...run, ...(await task.run(run)).add}
    }
    const outcome = plan.outcome(run)
    return {challenge_id: outcome.challenge_id, submitted: outcome.submitted}
  }

  private readState(): Partial<Record<ChoreName, number>> {
    if (!existsSync(this.stateFile)) return {}
    try {
      const parsed = ChoreState.safeParse(JSON.parse(readFileSync(this.stateFile, 'utf8')))
      return parsed.success ? parsed.data.last_run : {}
    } catch {
      // Unreadable: the chores are simply due, which is what a first run does too.
      return {}
    }
  }

  private writeState(): void {
    const last_run = {auto_claim: this.lastRun.auto_claim, benchmark: this.lastRun.benchmark}
    try {
      writeFileAtomic(this.stateFile, JSON.stringify({last_run}) + '\n', 0o600)
    } catch (error) {
      // A full disk: the chore runs again after a restart, no harm.
      this.options.log.warn({file: this.stateFile, err: describeError(error)}, 'could not record when the chores last ran')
    }
  }
}

async function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await delay(ms, undefined, {signal})
    return true
  } catch {
    return false
  }
}
