import {z} from 'zod'

import type {Job} from '../../core/api/job-schemas.js'
import {resolveFrom} from '../../core/config/paths.js'
import type {JobBiddingConfig} from '../../core/config/job-bidding.js'
import {AMOUNT_PATTERN, parseAmount} from '../../core/decimal.js'
import {askBidScript, type PricingScript} from './script-pricing.js'

/** [jobs.bidding.script] with its command resolved against the config file's directory. */
export function auctionPricingScript(configPath: string, config: JobBiddingConfig): PricingScript | undefined {
  return config.script ? {command: resolveFrom(configPath, config.script.command), timeoutMs: config.script.timeout_seconds * 1000} : undefined
}

/** What the program reads on stdin. */
export interface AuctionScriptInput {
  job: Job
  /** The job's work in its kind's units, when it could be read. */
  work?: {units: number; unit: string; describe: string}
  /** This machine's estimate of the run, in seconds. */
  estimate_seconds: number
  /** Jobs committed to or won and not done now. */
  promised: number
  now: number
}

const ScriptAnswer = z.union([
  z.strictObject({fee: z.string().regex(AMOUNT_PATTERN, 'expected a decimal string with at most 6 fractional digits')}),
  z.strictObject({decline: z.string().min(1).max(500)}),
])

export type AuctionScriptVerdict = {kind: 'fee'; micro: bigint} | {kind: 'decline'; reason: string} | {kind: 'failed'; reason: string}

/** The fee the program answers for an auction job, its decline, or why it could not be had: no commitment then. */
export async function feeByScript(script: PricingScript, input: AuctionScriptInput, signal?: AbortSignal): Promise<AuctionScriptVerdict> {
  const asked = await askBidScript(script, input, ScriptAnswer, '{"fee": "..."}', signal)
  if ('failed' in asked) return {kind: 'failed', reason: asked.failed}
  if ('decline' in asked.answer) return {kind: 'decline', reason: asked.answer.decline}
  return {kind: 'fee', micro: parseAmount(asked.answer.fee)}
}
