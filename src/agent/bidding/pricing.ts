import type {BiddingConfig} from '../../core/config/schema.js'
import {AMOUNT_DECIMALS, formatAmount, parseAmount} from '../../core/decimal.js'
import {percentOf, type Resources, type Utilisation} from './resources.js'

/** The parts of [bidding] that set a price. */
export type PricingRules = Pick<BiddingConfig, 'strategy' | 'prices' | 'floor_price' | 'peak' | 'scarcity'>

export interface PricingInputs {
  requirements: Resources
  /** When the bid is made (Unix ms): the peak window is read in UTC. */
  at: number
  /** The most used resource counting what is held, won and bid on, and this order; undefined when unknown. */
  utilisation: Utilisation | undefined
}

export interface Quote {
  /** Price per hour in integer micro-units (PROTOCOL: 6 decimals). */
  micro: bigint
  price: string
  /** How it was reached, for the decision's log line: `base 1.2 × peak 1.25 (18-22 UTC) = 1.5`. */
  why: string
}

const MICRO = 10n ** BigInt(AMOUNT_DECIMALS)
const MIB_PER_GIB = 1024n

/** numerator / denominator to the nearest micro-unit, halves rounded up (every price here is non-negative). */
function roundHalfUp(numerator: bigint, denominator: bigint): bigint {
  return (2n * numerator + denominator) / (2n * denominator)
}

export function inPeakWindow(at: number, peak: {start_hour: number; end_hour: number}): boolean {
  const hour = new Date(at).getUTCHours()
  // A window whose end is before its start wraps midnight (22 to 6).
  return peak.start_hour < peak.end_hour ? hour >= peak.start_hour && hour < peak.end_hour : hour >= peak.start_hour || hour < peak.end_hour
}

export function isScarce(utilisation: Utilisation | undefined, abovePercent: number): boolean {
  return utilisation !== undefined && utilisation.used * 100 > abovePercent * utilisation.capacity
}

/**
 * The price of an order under the fixed or dynamic strategy, exactly: base prices per core, GiB of memory (the order
 * asks in MiB), GiB of storage and GPU; the dynamic strategy multiplies by the peak and scarcity multipliers; the
 * product is rounded once, half up, to 6 decimals; the floor is the least it can be.
 */
export function quoteOrder(rules: PricingRules, inputs: PricingInputs): Quote {
  const {prices} = rules
  const need = inputs.requirements
  // Held as a fraction numerator/denominator until the one rounding at the end.
  let numerator =
    (BigInt(need.cpuCores) * parseAmount(prices.cpu_core) + BigInt(need.storageGb) * parseAmount(prices.storage_gb) + BigInt(need.gpuCount) * parseAmount(prices.gpu)) *
      MIB_PER_GIB +
    BigInt(need.memoryMb) * parseAmount(prices.memory_gb)
  let denominator = MIB_PER_GIB
  const steps = [`base ${formatAmount(roundHalfUp(numerator, denominator))}`]
  if (rules.strategy === 'dynamic') {
    if (rules.peak && inPeakWindow(inputs.at, rules.peak)) {
      numerator *= parseAmount(rules.peak.multiplier)
      denominator *= MICRO
      steps.push(`× peak ${rules.peak.multiplier} (${rules.peak.start_hour}-${rules.peak.end_hour} UTC)`)
    }
    if (isScarce(inputs.utilisation, rules.scarcity.above_percent) && inputs.utilisation) {
      numerator *= parseAmount(rules.scarcity.multiplier)
      denominator *= MICRO
      steps.push(`× scarcity ${rules.scarcity.multiplier} (${inputs.utilisation.resource} ${percentOf(inputs.utilisation)}% used > ${rules.scarcity.above_percent}%)`)
    }
  }
  const priced = roundHalfUp(numerator, denominator)
  if (steps.length > 1) steps.push(`= ${formatAmount(priced)}`)
  return withFloor(priced, rules.floor_price, `${rules.strategy}: ${steps.join(' ')}`)
}

/** The floor applies to every strategy, the script's prices included. */
export function withFloor(micro: bigint, floorPrice: string, why: string): Quote {
  const floor = parseAmount(floorPrice)
  if (micro >= floor) return {micro, price: formatAmount(micro), why}
  return {micro: floor, price: formatAmount(floor), why: `${why}; raised to the floor ${formatAmount(floor)}`}
}
