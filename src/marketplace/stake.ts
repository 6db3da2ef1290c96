import {formatAmount, parseAmount} from '../core/decimal.js'
import type {MarketplaceContext} from './context.js'
import {HttpError} from './http-error.js'

/** PROTOCOL §8 tiers, highest first: the minimum stake and how many contracts a provider may hold at once. */
const TIERS: readonly {name: string; minimumMicro: bigint; maxConcurrent: number | null}[] = [
  {name: 'frontier', minimumMicro: parseAmount('25000'), maxConcurrent: null},
  {name: 'enterprise', minimumMicro: parseAmount('10000'), maxConcurrent: 32},
  {name: 'datacenter', minimumMicro: parseAmount('5000'), maxConcurrent: 16},
  {name: 'workstation', minimumMicro: parseAmount('2500'), maxConcurrent: 8},
  {name: 'consumer', minimumMicro: parseAmount('1000'), maxConcurrent: 4},
  {name: 'unstaked', minimumMicro: 0n, maxConcurrent: 2},
]

export function tierFor(stakedMicro: bigint): {name: string; maxConcurrent: number | null} {
  const tier = TIERS.find((candidate) => stakedMicro >= candidate.minimumMicro) ?? TIERS[TIERS.length - 1]
  if (!tier) throw new Error('no stake tiers defined')
  return tier
}

export interface StakeView {
  staked: string
  tier: string
  /** null: the frontier tier has no limit. */
  max_concurrent_contracts: number | null
  unbonding: {amount: string; release_at: number}[]
  rewards_pending: string
  /** The part of `staked` held as collateral by active job leases (§12): it can't be unstaked until released. */
  locked: string
}

/**
 * Stake, unbonding and rewards (§8). Amounts are integer micro-units (BigInt) end to end. Rewards, kept simple:
 * when a delivered contract is terminated, the provider earns the offering's price per hour for the time from
 * `provisioned` until it was cancelled or expired (floored to a micro-unit); claiming moves them out.
 */
export class StakeBook {
  private readonly provider
  private readonly unbonding
  private readonly setStaked
  private readonly setRewards
  private readonly addUnbonding
  private readonly setStakedAndLocked

  constructor(private readonly context: MarketplaceContext) {
    const {db} = context
    this.provider = db.prepare<[string], {staked_micro: string; rewards_pending_micro: string; locked_micro: string}>(
      'SELECT staked_micro, rewards_pending_micro, locked_micro FROM providers WHERE pubkey = ?',
    )
    this.unbonding = db.prepare<[string, number], {amount_micro: string; release_at: number}>(
      'SELECT amount_micro, release_at FROM unbonding WHERE provider_pubkey = ? AND release_at > ? ORDER BY release_at, id',
    )
    this.setStaked = db.prepare('UPDATE providers SET staked_micro = ? WHERE pubkey = ?')
    this.setRewards = db.prepare('UPDATE providers SET rewards_pending_micro = ? WHERE pubkey = ?')
    this.setStakedAndLocked = db.prepare('UPDATE providers SET staked_micro = ?, locked_micro = ? WHERE pubkey = ?')
    this.addUnbonding = db.prepare('INSERT INTO unbonding (provider_pubkey, amount_micro, release_at) VALUES (?, ?, ?)')
  }

  private balances(providerPubkey: string): {staked: bigint; rewards: bigint; locked: bigint} {
    const row = this.provider.get(providerPubkey)
    if (!row) throw new HttpError(404, 'not_found', 'provider not found')
    return {staked: BigInt(row.staked_micro), rewards: BigInt(row.rewards_pending_micro), locked: BigInt(row.locked_micro)}
  }

  /** How many contracts the provider may hold at once; null for no limit. */
  maxConcurrent(providerPubkey: string): number | null {
    return tierFor(this.balances(providerPubkey).staked).maxConcurrent
  }

  view(providerPubkey: string): StakeView {
    const {staked, rewards, locked} = this.balances(providerPubkey)
    const tier = tierFor(staked)
    return {
      staked: formatAmount(staked),
      tier: tier.name,
      max_concurrent_contracts: tier.maxConcurrent,
      unbonding: this.unbonding.all(providerPubkey, this.context.clock.now()).map((row) => ({amount: formatAmount(BigInt(row.amount_micro)), release_at: row.release_at})),
      rewards_pending: formatAmount(rewards),
      locked: formatAmount(locked),
    }
  }

  stake(providerPubkey: string, amount: string): StakeView {
    const {staked} = this.balances(providerPubkey)
    this.setStaked.run((staked + parseAmount(amount)).toString(), providerPubkey)
    // A higher tier may hand out contracts a long poll is waiting for.
    this.context.pending.notify(providerPubkey)
    return this.view(providerPubkey)
  }

  unstake(providerPubkey: string, amount: string): StakeView {
    const {staked, locked} = this.balances(providerPubkey)
    const micro = parseAmount(amount)
    if (micro > staked - locked) {
      throw new HttpError(409, 'insufficient_stake', `cannot unstake ${amount}: ${formatAmount(staked)} is staked, ${formatAmount(locked)} of it locked as job collateral`)
    }
    this.context.db.transaction(() => {
      this.setStaked.run((staked - micro).toString(), providerPubkey)
      this.addUnbonding.run(providerPubkey, micro.toString(), this.context.clock.now() + this.context.settings.unbondingPeriodMs)
    })()
    return this.view(providerPubkey)
  }

  claimRewards(providerPubkey: string): {claimed: string; stake: StakeView} {
    const {rewards} = this.balances(providerPubkey)
    this.setRewards.run('0', providerPubkey)
    return {claimed: formatAmount(rewards), stake: this.view(providerPubkey)}
  }

  /** Credits the earnings of a delivered contract (see the class comment). */
  credit(providerPubkey: string, pricePerHourMicro: bigint, servedMs: number): void {
    if (servedMs <= 0) return
    const earned = (pricePerHourMicro * BigInt(Math.floor(servedMs))) / 3_600_000n
    const {rewards} = this.balances(providerPubkey)
    this.setRewards.run((rewards + earned).toString(), providerPubkey)
  }

  /** §12: locks a lease's collateral out of the unlocked stake, or 409 `insufficient_stake`. Run inside the lease's transaction. */
  lockCollateral(providerPubkey: string, micro: bigint): void {
    const {staked, locked} = this.balances(providerPubkey)
    if (staked - locked < micro) {
      throw new HttpError(409, 'insufficient_stake', `the job's collateral is ${formatAmount(micro)}; ${formatAmount(staked - locked)} of the stake is unlocked`)
    }
    this.setStakedAndLocked.run(staked.toString(), (locked + micro).toString(), providerPubkey)
  }

  /** §12: ends a lease's lock; `forfeitedMicro` of it leaves the stake (a rejected result: all of it; an expired lease: half). */
  releaseCollateral(providerPubkey: string, lockedMicro: bigint, forfeitedMicro: bigint): void {
    const {staked, locked} = this.balances(providerPubkey)
    const remaining = locked - lockedMicro
    if (remaining < 0n || forfeitedMicro > lockedMicro) throw new Error('released more collateral than was locked')
    this.setStakedAndLocked.run((staked - forfeitedMicro).toString(), remaining.toString(), providerPubkey)
  }

  /** §12: an accepted result's reward goes to `rewards_pending`. */
  creditReward(providerPubkey: string, micro: bigint): void {
    const {rewards} = this.balances(providerPubkey)
    this.setRewards.run((rewards + micro).toString(), providerPubkey)
  }
}
