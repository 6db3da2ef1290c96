import type {Job} from '../../core/api/job-schemas.js'
import type {JobKind} from '../../core/api/job-kinds.js'
import {WORK_UNITS, type JobBiddingConfig} from '../../core/config/job-bidding.js'
import {describeError} from '../../core/errors.js'
import {ExecutorError, type RunEstimate} from '../../executors/executor.js'
import {feeByScript} from './auction-script.js'
import {
  containerWork,
  declineJob,
  earliestStart,
  lateRun,
  quoteJob,
  screenDeadline,
  screenJob,
  screenMaxFee,
  withJobFloor,
  type AuctionDecision,
  type FeeQuote,
  type PromisedRun,
  type WorkUnits,
} from './auction-pricing.js'
import {readWork} from './auction-work.js'
import type {PricingScript} from './script-pricing.js'

/** What deciding a job needs from around it. */
export interface AuctionDecideContext {
  config: JobBiddingConfig
  /** The kinds this agent has an executor for. */
  kinds: readonly JobKind[]
  script: PricingScript | undefined
  /** Jobs run at once ([jobs] max_concurrent): the schedule check's slots. */
  runSlots: number
  /** Digest-checked bytes of a program (cached by the caller). */
  program(job: Job): Promise<Buffer>
  /** Digest-checked bytes of a job's input. */
  input(job: Job): Promise<Buffer>
  estimate(job: Job, program: Buffer, input: Buffer | undefined): Promise<RunEstimate | undefined>
  /** Jobs committed to or won and not done, this one not included. */
  promised(): PromisedRun[]
  now(): number
  signal?: AbortSignal
}

export type AuctionVerdict = AuctionDecision & {estimate?: RunEstimate}

/**
 * Whether there is room for one more promise: max_concurrent counts commitments (each may win) and won jobs not
 * done; the schedule check runs every promise, earliest deadline first, on the run slots, and finds the one that
 * would be late. Called once while deciding and again right before the commitment is journalled (synchronously
 * with it), so two decisions made at once can't both take the last place.
 */
export function screenCapacity(candidate: PromisedRun, promised: readonly PromisedRun[], config: JobBiddingConfig, runSlots: number, now: number): AuctionDecision | undefined {
  if (promised.length >= config.max_concurrent) {
    return declineJob('at_capacity', `${promised.length} jobs committed to or won and not done; max_concurrent is ${config.max_concurrent}`)
  }
  const late = lateRun([...promised, candidate], runSlots, now, config.deadline_margin_seconds)
  if (late) {
    const which = late.jobId === candidate.jobId ? 'it' : `job ${late.jobId}`
    return declineJob('schedule_full', `with the ${promised.length} jobs already promised on ${runSlots} run slot${runSlots === 1 ? '' : 's'}, ${which} would miss its deadline`)
  }
  return undefined
}

export function promisedRunOf(job: Job, estimate: RunEstimate, now: number): PromisedRun {
  return {jobId: job.job_id, startAt: earliestStart(job, now), seconds: estimate.seconds, deadline: job.deadline}
}

/**
 * One auction job's decision, reserving nothing: the filters on the job alone (kind, program lists, input size, still
 * open), its work and this machine's estimate (from the measured speed), the deadline, the capacity, then the fee
 * (builtin: the kind's cost model; script: the operator's program) and the job's max_fee.
 */
export async function decideAuctionJob(job: Job, context: AuctionDecideContext): Promise<AuctionVerdict> {
  const {config} = context
  const screened = screenJob(job, config, context.kinds, context.now())
  if (screened) return screened
  let program: Buffer
  let input: Buffer | undefined
  try {
    program = await context.program(job)
    if (job.kind === 'quantum_circuit') input = await context.input(job)
  } catch (error) {
    if (context.signal?.aborted) throw error
    return declineJob('unreadable_job', `the job's program or input could not be had: ${describeError(error)}`)
  }
  const estimate = await context.estimate(job, program, input)
  if (!estimate) return declineJob('no_estimate', `no measured speed for ${job.kind} jobs on this machine yet, so the deadline can't be checked (run \`outpost benchmark run\` or one job first)`)
  const now = context.now()
  const late = screenDeadline(job, estimate, config.deadline_margin_seconds, now)
  if (late) return {...late, estimate}
  const room = screenCapacity(promisedRunOf(job, estimate, now), context.promised(), config, context.runSlots, now)
  if (room) return {...room, estimate}

  let work: WorkUnits | undefined
  try {
    work = job.kind === 'container' ? containerWork(job, estimate) : readWork(job, program, input)
  } catch (error) {
    if (!(error instanceof ExecutorError)) throw error
    return {...declineJob('unreadable_job', `the job's size could not be read: ${error.message}`), estimate}
  }

  let quote: FeeQuote
  if (config.strategy === 'script') {
    if (!context.script) return {...declineJob('script_failed', 'strategy = "script" without [jobs.bidding.script]'), estimate}
    const verdict = await feeByScript(
      context.script,
      {job, work: {units: work.units, unit: WORK_UNITS[job.kind], describe: work.describe}, estimate_seconds: estimate.seconds, promised: context.promised().length, now},
      context.signal,
    )
    if (verdict.kind === 'decline') return {...declineJob('script_declined', `the pricing script declined: ${verdict.reason}`), estimate}
    if (verdict.kind === 'failed') return {...declineJob('script_failed', `the pricing script failed: ${verdict.reason}`), estimate}
    quote = withJobFloor(verdict.micro, config[job.kind]?.floor ?? '0', 'script')
  } else {
    const pricing = config[job.kind]
    if (!pricing) return {...declineJob('no_cost_model', `[jobs.bidding.${job.kind}] is not set, so the builtin strategy has no price for it`), estimate}
    quote = quoteJob(job.kind, pricing, work)
  }
  const refused = screenMaxFee(job, quote)
  if (refused) return {...refused, estimate}
  return {kind: 'commit', fee: quote.fee, micro: quote.micro, why: quote.why, estimate}
}
