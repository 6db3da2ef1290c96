import type {ProviderSession} from '../core/api/session.js'
import {claimRewards, depositStake, getStake, unstake, type StakeInfo} from '../core/api/stake.js'
import {formatAmount, parseAmount} from '../core/decimal.js'
import {ExitCode, UserError} from '../core/errors.js'
import {nextTier, STAKE_TIERS} from './tiers.js'

export interface StakeSummary {
  provider_pubkey: string
  staked: string
  tier: string
  /** null: no limit. */
  max_concurrent_contracts: number | null
  unbonding: {amount: string; release_at: number}[]
  unbonding_total: string
  rewards_pending: string
  /** The tier above, and how much more stake it takes; null at the top. */
  next_tier: {name: string; minimum: string; needed: string; max_concurrent_contracts: number | null} | null
}

export interface StakeChange {
  amount: string
  tier_before: string
  tier_after: string
  tier_changed: boolean
  /** When a withdrawn amount is released (end of the unbonding period). */
  release_at?: number
  stake: StakeSummary
}

export interface ClaimOutcome {
  claimed: string
  stake: StakeSummary
}

/** A stake amount typed by a person: exact (BigInt micro-units, never a float) and above zero. */
export function parseStakeAmount(text: string): bigint {
  let micro: bigint
  try {
    micro = parseAmount(text.trim(), 'amount')
  } catch (error) {
    // A mistyped argument is a usage error (exit 2), like any other bad argument.
    if (error instanceof UserError) throw new UserError(error.message, {code: error.code, suggestion: error.suggestion, exit: ExitCode.usage})
    throw error
  }
  if (micro === 0n) {
    throw new UserError('amount: must be above zero', {code: 'invalid_amount', exit: ExitCode.usage, suggestion: 'give a positive amount, like 1000 or 12.5'})
  }
  return micro
}

export function summarize(providerPubkey: string, info: StakeInfo): StakeSummary {
  const staked = parseAmount(info.staked, 'staked')
  const next = nextTier(staked)
  const unbondingTotal = info.unbonding.reduce((sum, entry) => sum + parseAmount(entry.amount, 'unbonding amount'), 0n)
  return {
    provider_pubkey: providerPubkey,
    staked: info.staked,
    tier: info.tier,
    max_concurrent_contracts: info.max_concurrent_contracts,
    unbonding: info.unbonding,
    unbonding_total: formatAmount(unbondingTotal),
    rewards_pending: info.rewards_pending,
    next_tier: next
      ? {name: next.name, minimum: formatAmount(next.minimumMicro), needed: formatAmount(next.minimumMicro - staked), max_concurrent_contracts: next.maxConcurrent}
      : null,
  }
}

/** The tier a stake would fall in by PROTOCOL §8, to say what a withdrawal will do before it is made. */
export function tierNameFor(stakedMicro: bigint): string {
  return [...STAKE_TIERS].reverse().find((tier) => stakedMicro >= tier.minimumMicro)?.name ?? 'unstaked'
}

export async function stakeInfo(session: Pick<ProviderSession, 'client' | 'providerPubkey'>): Promise<StakeSummary> {
  return summarize(session.providerPubkey, await getStake(session.client, session.providerPubkey))
}

export async function depositToStake(session: ProviderSession, amountText: string): Promise<StakeChange> {
  const amount = formatAmount(parseStakeAmount(amountText))
  const before = await getStake(session.client, session.providerPubkey)
  const after = await depositStake(session.client, session.providerPubkey, amount)
  return {amount, tier_before: before.tier, tier_after: after.tier, tier_changed: before.tier !== after.tier, stake: summarize(session.providerPubkey, after)}
}

export interface WithdrawalPlan {
  amount: string
  staked: string
  tier_before: string
  tier_after: string
}

/** Checks a withdrawal against the stake before anyone is asked to confirm it. */
export async function planWithdrawal(session: ProviderSession, amountText: string): Promise<WithdrawalPlan> {
  const micro = parseStakeAmount(amountText)
  const current = await getStake(session.client, session.providerPubkey)
  const staked = parseAmount(current.staked, 'staked')
  if (micro > staked) {
    throw new UserError(`cannot withdraw ${formatAmount(micro)}: ${current.staked} is staked`, {
      code: 'insufficient_stake',
      suggestion: `withdraw at most ${current.staked} (see \`outpost stake info\`)`,
    })
  }
  return {amount: formatAmount(micro), staked: current.staked, tier_before: current.tier, tier_after: tierNameFor(staked - micro)}
}

/** Unstakes; the amount unbonds for the marketplace's period, and its release time is the new unbonding entry's. */
export async function withdrawFromStake(session: ProviderSession, plan: WithdrawalPlan): Promise<StakeChange> {
  const before = await getStake(session.client, session.providerPubkey)
  const after = await unstake(session.client, session.providerPubkey, plan.amount)
  const earlier = new Set(before.unbonding.map((entry) => `${entry.amount}@${entry.release_at}`))
  const added = after.unbonding.filter((entry) => !earlier.has(`${entry.amount}@${entry.release_at}`) && entry.amount === plan.amount)
  return {
    amount: plan.amount,
    tier_before: before.tier,
    tier_after: after.tier,
    tier_changed: before.tier !== after.tier,
    release_at: added.at(-1)?.release_at,
    stake: summarize(session.providerPubkey, after),
  }
}

export async function claimPendingRewards(session: ProviderSession): Promise<ClaimOutcome> {
  const answer = await claimRewards(session.client, session.providerPubkey)
  return {claimed: answer.claimed, stake: summarize(session.providerPubkey, answer.stake)}
}
