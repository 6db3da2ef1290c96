import {parseAmount} from '../core/decimal.js'

export interface StakeTier {
  name: string
  /** The least stake of the tier, in micro-units. */
  minimumMicro: bigint
  /** Contracts held at once; null: no limit. */
  maxConcurrent: number | null
}

/** PROTOCOL §8, lowest first. The client's own copy of the table, to say what the next tier takes. */
export const STAKE_TIERS: readonly StakeTier[] = [
  {name: 'unstaked', minimumMicro: 0n, maxConcurrent: 2},
  {name: 'consumer', minimumMicro: parseAmount('1000'), maxConcurrent: 4},
  {name: 'workstation', minimumMicro: parseAmount('2500'), maxConcurrent: 8},
  {name: 'datacenter', minimumMicro: parseAmount('5000'), maxConcurrent: 16},
  {name: 'enterprise', minimumMicro: parseAmount('10000'), maxConcurrent: 32},
  {name: 'frontier', minimumMicro: parseAmount('25000'), maxConcurrent: null},
]

/** The first tier above `stakedMicro`, or undefined at the top. */
export function nextTier(stakedMicro: bigint): StakeTier | undefined {
  return STAKE_TIERS.find((tier) => tier.minimumMicro > stakedMicro)
}
