import {UserError} from './errors.js'

/** PROTOCOL: amounts are decimal strings with at most 6 fractional digits. Held as integer micro-units (BigInt). */
export const AMOUNT_DECIMALS = 6
const SCALE = 10n ** BigInt(AMOUNT_DECIMALS)
export const AMOUNT_PATTERN = /^(0|[1-9]\d{0,29})(\.\d{1,6})?$/

export function isAmount(value: string): boolean {
  return AMOUNT_PATTERN.test(value)
}

/** Parses a decimal amount string exactly; `what` names it in the error. */
export function parseAmount(value: string, what = 'amount'): bigint {
  const match = AMOUNT_PATTERN.exec(value)
  if (!match) {
    throw new UserError(`${what}: "${value}" is not a decimal amount`, {
      code: 'invalid_amount',
      suggestion: 'write a non-negative decimal with at most 6 digits after the point, like 12.5',
    })
  }
  const fraction = (match[2] ?? '.').slice(1).padEnd(AMOUNT_DECIMALS, '0')
  return BigInt(match[1] ?? '0') * SCALE + BigInt(fraction)
}

export function formatAmount(micro: bigint): string {
  const negative = micro < 0n
  const abs = negative ? -micro : micro
  const whole = abs / SCALE
  const fraction = (abs % SCALE).toString().padStart(AMOUNT_DECIMALS, '0').replace(/0+$/, '')
  return (negative ? '-' : '') + whole.toString() + (fraction ? '.' + fraction : '')
}
