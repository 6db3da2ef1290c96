import {UserError} from './errors.js'

const UNITS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000}
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/

/** Parses `90d`, `24h`, `30s`, `0` into milliseconds; `what` names the flag in the error. */
export function parseDuration(text: string, what: string): number {
  if (text.trim() === '0') return 0
  const match = DURATION.exec(text.trim())
  if (!match) {
    throw new UserError(`${what}: "${text}" is not a duration`, {code: 'invalid_duration', exit: 2, suggestion: 'write a number and a unit: 30s, 15m, 24h, 90d, 2w'})
  }
  return Math.round(Number(match[1]) * (UNITS[match[2] ?? 's'] ?? 1000))
}
