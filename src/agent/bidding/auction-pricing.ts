import type {Job} from '../../core/api/job-schemas.js'
import type {JobKind} from '../../core/api/job-kinds.js'
import {UNIT_PRICE_PATTERN, WORK_UNITS, type JobBiddingConfig, type KindPricing} from '../../core/config/job-bidding.js'
import {AMOUNT_DECIMALS, formatAmount, parseAmount} from '../../core/decimal.js'
import type {RunEstimate} from '../../executors/executor.js'

/** Why a job got no commitment; each is a label of the auction decisions metric. */
export type AuctionDeclineReason =
  | 'kind_not_served'
  | 'program_denied'
  | 'program_not_allowed'
  | 'input_too_large'
  | 'bidding_closed'
  | 'unreadable_job'
  | 'no_estimate'
  | 'deadline_too_close'
  | 'at_capacity'
  | 'schedule_full'
  | 'no_cost_model'
  | 'zero_fee'
  | 'above_max_fee'
  | 'script_declined'
  | 'script_failed'
  | 'commit_refused'

export type AuctionDecision =
  | {kind: 'commit'; fee: string; micro: bigint; why: string}
  | {kind: 'declined'; reason: AuctionDeclineReason; detail: string}

export const declineJob = (reason: AuctionDeclineReason, detail: string): AuctionDecision => ({kind: 'declined', reason, detail})

/** A job's work in the units its kind is priced in (WORK_UNITS), and how they were counted. */
export interface WorkUnits {
  units: number
  describe: string
}

/** Prices per unit are held in units of 10^-18 (attos), amounts in micro-units: exact, one rounding at the end. */
const UNIT_PRICE_DECIMALS = 18
const MICRO = 10n ** BigInt(AMOUNT_DECIMALS)
/** Units are counted in thousandths (container CPU-seconds are fractional). */
const MILLI = 1000n

export function parseUnitPrice(value: string): bigint {
  const match = UNIT_PRICE_PATTERN.exec(value)
  if (!match) throw new Error(`"${value}" is not a unit price`)
  const fraction = (match[2] ?? '.').slice(1).padEnd(UNIT_PRICE_DECIMALS, '0')
  return BigInt(match[1] ?? '0') * 10n ** BigInt(UNIT_PRICE_DECIMALS) + BigInt(fraction)
}

function roundHalfUp(numerator: bigint, denominator: bigint): bigint {
  return (2n * numerator + denominator) / (2n * denominator)
}

export interface FeeQuote {
  micro: bigint
  fee: string
  why: string
}

/**
 * The builtin strategy's fee: units × price per unit × (1 + margin), rounded once, half up, to 6 decimals; never
 * below the kind's floor. In a Vickrey auction this is the bid to make: the cost, since the winner is paid the
 * second-lowest fee anyway.
 */
export function quoteJob(kind: JobKind, pricing: KindPricing, work: WorkUnits): FeeQuote {
  const unitsMilli = BigInt(Math.ceil(work.units * Number(MILLI)))
  const marginMicro = parseAmount(pricing.margin)
  const numerator = parseUnitPrice(pricing.price_per_unit) * unitsMilli * (MICRO + marginMicro)
  const denominator = MILLI * 10n ** BigInt(UNIT_PRICE_DECIMALS - AMOUNT_DECIMALS) * MICRO
  const cost = roundHalfUp(numerator, denominator)
  const why = `${work.describe}: ${formatUnits(work.units)} ${WORK_UNITS[kind]} × ${pricing.price_per_unit}${marginMicro > 0n ? ` × (1 + margin ${pricing.margin})` : ''} = ${formatAmount(cost)}`
  return withJobFloor(cost, pricing.floor, why)
}

export function withJobFloor(micro: bigint, floor: string, why: string): FeeQuote {
  const least = parseAmount(floor)
  if (micro >= least) return {micro, fee: formatAmount(micro), why}
  return {micro: least, fee: formatAmount(least), why: `${why}; raised to the floor ${formatAmount(least)}`}
}

function formatUnits(units: number): string {
  return Number.isInteger(units) ? String(units) : units.toFixed(3)
}

/** Container jobs are priced per CPU-second: the estimated run time times the cores the job asks for. */
export function containerWork(job: Job, estimate: RunEstimate): WorkUnits {
  return {units: estimate.seconds * job.resources.cpu_cores, describe: `${estimate.seconds.toFixed(3)} s × ${job.resources.cpu_cores} cores`}
}

/** The filters that need nothing but the job itself, cheapest first; undefined when the job passes them. */
export function screenJob(job: Job, config: JobBiddingConfig, served: readonly JobKind[], now: number): AuctionDecision | undefined {
  if (!served.includes(job.kind)) return declineJob('kind_not_served', `this agent runs no ${job.kind} jobs (served: ${served.join(', ') || 'none'})`)
  if (config.program_deny.includes(job.program.digest)) return declineJob('program_denied', `program ${job.program.digest.slice(0, 12)}… is on program_deny`)
  if (config.program_allow.length > 0 && !config.program_allow.includes(job.program.digest)) {
    return declineJob('program_not_allowed', `program ${job.program.digest.slice(0, 12)}… is not on program_allow`)
  }
  if (job.input.size_bytes > config.max_input_bytes) return declineJob('input_too_large', `input of ${job.input.size_bytes} bytes is over max_input_bytes ${config.max_input_bytes}`)
  if (job.bid_closes_at === undefined || now >= job.bid_closes_at) return declineJob('bidding_closed', 'bidding on this job has closed')
  return undefined
}

/** When a won job can start at the earliest: when its auction's reveals close (only then may the winner lease it). */
export function earliestStart(job: Pick<Job, 'reveal_closes_at'>, now: number): number {
  return Math.max(now, job.reveal_closes_at ?? now)
}

/** The deadline filter: from the earliest start, the estimated run time plus the margin must fit before the deadline. */
export function screenDeadline(job: Job, estimate: RunEstimate, marginSeconds: number, now: number): AuctionDecision | undefined {
  const start = earliestStart(job, now)
  const needMs = (estimate.seconds + marginSeconds) * 1000
  if (start + needMs <= job.deadline) return undefined
  return declineJob(
    'deadline_too_close',
    `${((job.deadline - start) / 1000).toFixed(1)} s from the auction's end to the deadline; the run needs ${estimate.seconds.toFixed(2)} s (${estimate.basis}) + ${marginSeconds} s margin`,
  )
}

/** A job promised (committed to, or won and not done) as the schedule check sees it. */
export interface PromisedRun {
  jobId: string
  /** Unix ms: the earliest it can start. */
  startAt: number
  seconds: number
  deadline: number
}

/**
 * Whether every promised run, and the new one, can finish before its deadline (less the margin) on `slots` runs at
 * once: earliest deadline first, each on the slot free soonest. Returns the job that would be late, or undefined.
 * Commitments count: each may win, and a provider that wins more than it can run forfeits collateral.
 */
export function lateRun(promised: readonly PromisedRun[], slots: number, now: number, marginSeconds: number): PromisedRun | undefined {
  const free = Array.from({length: Math.max(1, slots)}, () => now)
  for (const run of [...promised].sort((a, b) => a.deadline - b.deadline)) {
    let soonest = 0
    for (let index = 1; index < free.length; index++) if ((free[index] ?? 0) < (free[soonest] ?? 0)) soonest = index
    const finish = Math.max(free[soonest] ?? now, run.startAt) + run.seconds * 1000
    if (finish + marginSeconds * 1000 > run.deadline) return run
    free[soonest] = finish
  }
  return undefined
}

/** The max fee check: a fee above the job's max_fee would be refused at reveal (409 fee_above_max). */
export function screenMaxFee(job: Job, quote: FeeQuote): AuctionDecision | undefined {
  if (quote.micro === 0n) return declineJob('zero_fee', 'the fee comes to 0: set price_per_unit or floor for this kind')
  const max = job.reward.max_fee === undefined ? undefined : parseAmount(job.reward.max_fee)
  if (max !== undefined && quote.micro > max) return declineJob('above_max_fee', `our fee ${quote.fee} is above the job's max_fee ${job.reward.max_fee} (${quote.why})`)
  return undefined
}
