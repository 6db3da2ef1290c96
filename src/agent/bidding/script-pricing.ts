import {z} from 'zod'

import type {OpenOrder} from '../../core/api/provider.js'
import type {LoadedConfig} from '../../core/config/load.js'
import {resolveFrom} from '../../core/config/paths.js'
import {AMOUNT_PATTERN, parseAmount} from '../../core/decimal.js'
import {describeError} from '../../core/errors.js'
import type {Resources} from './resources.js'

export interface PricingScript {
  /** Absolute path of the operator's program. */
  command: string
  timeoutMs: number
}

/** [bidding.script] with its command resolved against the config file's directory. */
export function pricingScript(loaded: LoadedConfig): PricingScript | undefined {
  const {script} = loaded.config.bidding
  return script ? {command: resolveFrom(loaded.path, script.command), timeoutMs: script.timeout_seconds * 1000} : undefined
}

/** What the program reads on stdin: the order, and the capacity it would come out of. */
export interface ScriptPricingInput {
  order: OpenOrder
  capacity: {cpu_cores: number; memory_mb: number; storage_gb: number; gpu_count: number}
  /** Free now, after what is held, won and bid on (this order not included). */
  free: {cpu_cores: number; memory_mb: number; storage_gb: number; gpu_count: number}
  now: number
}

/** One JSON answer on stdout: a price, or a decline with a reason. */
const ScriptAnswer = z.union([
  z.strictObject({price_per_hour: z.string().regex(AMOUNT_PATTERN, 'expected a decimal string with at most 6 fractional digits')}),
  z.strictObject({decline: z.string().min(1).max(500)}),
])

export type ScriptVerdict = {kind: 'price'; micro: bigint} | {kind: 'decline'; reason: string} | {kind: 'failed'; reason: string}

export function wireResources(resources: Resources): ScriptPricingInput['capacity'] {
  return {cpu_cores: resources.cpuCores, memory_mb: resources.memoryMb, storage_gb: resources.storageGb, gpu_count: resources.gpuCount}
}

/**
 * Runs `<command> bid` with `input` as JSON on stdin (the script provisioner's runner: own process group, the whole
 * group killed at the timeout) and parses its one JSON answer with `schema`. Any failure is a reason, never an
 * exception: what the program could not price is never bid on.
 */
export async function askBidScript<S extends z.ZodType>(
  script: PricingScript,
  input: unknown,
  schema: S,
  expected: string,
  signal?: AbortSignal,
): Promise<{answer: z.infer<S>} | {failed: string}> {
  // Loaded on the first bid: execa and its dependencies stay out of an agent that prices without a script.
  const {runScript, stderrTail} = await import('../../provisioners/script/run-script.js')
  let result
  try {
    result = await runScript({command: script.command, action: 'bid', input, timeoutMs: script.timeoutMs, signal})
  } catch (error) {
    return {failed: describeError(error)}
  }
  if (result.exitCode !== 0) return {failed: `exited with ${result.exitCode === null ? 'a signal' : `code ${result.exitCode}`}${stderrTail(result.stderr, 3)}`}
  let output: unknown
  try {
    output = JSON.parse(result.stdout.trim())
  } catch {
    return {failed: `printed no JSON: ${JSON.stringify(result.stdout.trim().slice(0, 200))}`}
  }
  const answer = schema.safeParse(output)
  return answer.success ? {answer: answer.data} : {failed: `answered neither ${expected} nor {"decline": "..."}: ${JSON.stringify(output).slice(0, 200)}`}
}

/** The price the program answers for an order, its decline, or why it could not be had. */
export async function priceByScript(script: PricingScript, input: ScriptPricingInput, signal?: AbortSignal): Promise<ScriptVerdict> {
  const asked = await askBidScript(script, input, ScriptAnswer, '{"price_per_hour": "..."}', signal)
  if ('failed' in asked) return {kind: 'failed', reason: asked.failed}
  if ('decline' in asked.answer) return {kind: 'decline', reason: asked.answer.decline}
  return {kind: 'price', micro: parseAmount(asked.answer.price_per_hour)}
}
