import {ExitCode, UserError} from './errors.js'

const UNIT_MS = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000} as const
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/
const BARE_NUMBER = /^\d+(?:\.\d+)?$/

/** The units a duration may carry, as every duration error lists them. */
export const DURATION_UNITS = 'ms, s, m, h, d or w (like 500ms, 30s, 15m, 24h, 7d, 2w)'

function isUnit(unit: string): unit is keyof typeof UNIT_MS {
  return unit in UNIT_MS
}

/**
 * Parses `90d`, `24h`, `30s`, `500ms`, `2w` or `0` into milliseconds; `what` names the flag in the error. A bare number
 * other than 0 is refused: seconds to one command and hours to another is how a grace of 24 becomes 24 ms.
 */
export function parseDuration(text: string, what: string): number {
  const trimmed = text.trim()
  if (trimmed === '0') return 0
  const match = DURATION.exec(trimmed)
  const unit = match?.[2]
  if (!match || unit === undefined || !isUnit(unit)) {
    const problem = BARE_NUMBER.test(trimmed) ? 'is a number without a unit' : 'is not a duration'
    throw new UserError(`${what}: "${text}" ${problem}: write a number and one of the units ${DURATION_UNITS}`, {
      code: 'invalid_duration',
      exit: ExitCode.usage,
      suggestion: `for example ${what} 30s`,
    })
  }
  return Math.round(Number(match[1]) * UNIT_MS[unit])
}
