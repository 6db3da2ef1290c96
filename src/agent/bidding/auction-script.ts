import {z} from 'zod'

import type {Job} from '../../core/api/job-schemas.js'
import {resolveFrom} from '../../core/config/paths.js'
import type {JobBiddingConfig} from '../../core/config/job-bidding.js'
import {AMOUNT_PATTERN, parseAmount} from '../../core/decimal.js'
import {describeError} from '../../core/errors.js'
import {runScript, stderrTail} from '../../provisioners/script/run-script.js'
import type {PricingScript} from './script-pricing.js'

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

/**
 * Runs `<command> bid` with the job as JSON on stdin (own process group, killed at the timeout) and reads its one
 * JSON answer. Any failure is a verdict, never an exception: a job the program could not price gets no commitment.
 */
export async function feeByScript(script: PricingScript, input: AuctionScriptInput, signal?: AbortSignal): Promise<AuctionScriptVerdict> {
  let result
  try {
    result = await runScript({command: script.command, action: 'bid', input, timeoutMs: script.timeoutMs, signal})
  } catch (error) {
    return {kind: 'failed', reason: describeError(error)}
  }
  if (result.exitCode !== 0) return {kind: 'failed', reason: `exited with ${result.exitCode === null ? 'a signal' : `code ${result.exitCode}`}${stderrTail(result.stderr, 3)}`}
  let output: unknown
  try {
    output = JSON.parse(result.stdout.trim())
  } catch {
    return {kind: 'failed', reason: `printed no JSON: ${JSON.stringify(result.stdout.trim().slice(0, 200))}`}
  }
  const answer = ScriptAnswer.safeParse(output)
  if (!answer.success) return {kind: 'failed', reason: `answered neither {"fee": "..."} nor {"decline": "..."}: ${JSON.stringify(output).slice(0, 200)}`}
  if ('decline' in answer.data) return {kind: 'decline', reason: answer.data.decline}
  return {kind: 'fee', micro: parseAmount(answer.data.fee)}
}
