import {z} from 'zod'

import type {OpenOrder} from '../../core/api/provider.js'
import type {LoadedConfig} from '../../core/config/load.js'
import {resolveFrom} from '../../core/config/paths.js'
import {AMOUNT_PATTERN, parseAmount} from '../../core/decimal.js'
import {describeError} from '../../core/errors.js'
import {runScript, stderrTail} from '../../provisioners/script/run-script.js'
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
 * Runs `<command> bid` with the input as JSON on stdin (the script provisioner's runner: own process group, the
 * whole group killed at the timeout) and reads its answer. Any failure is a verdict, never an exception: an order
 * the program could not price is declined, never bid on.
 */
export async function priceByScript(script: PricingScript, input: ScriptPricingInput, signal?: AbortSignal): Promise<ScriptVerdict> {
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
  if (!answer.success) return {kind: 'failed', reason: `answered neither {"price_per_hour": "..."} nor {"decline": "..."}: ${JSON.stringify(output).slice(0, 200)}`}
  if ('decline' in answer.data) return {kind: 'decline', reason: answer.data.decline}
  return {kind: 'price', micro: parseAmount(answer.data.price_per_hour)}
}
