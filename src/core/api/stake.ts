import {z} from 'zod'

import type {ApiClient} from './client.js'
import {Amount, UnixMs} from './schemas.js'

/** PROTOCOL §8: stake, unbonding and rewards. Reads are public; every change is signed by the provider main key. */

export const StakeInfo = z.object({
  staked: Amount,
  tier: z.string().min(1),
  /** null: the tier has no limit. */
  max_concurrent_contracts: z.number().int().positive().nullable(),
  unbonding: z.array(z.object({amount: Amount, release_at: UnixMs})),
  rewards_pending: Amount,
})
export type StakeInfo = z.infer<typeof StakeInfo>

export const ClaimResult = z.object({claimed: Amount, stake: StakeInfo})
export type ClaimResult = z.infer<typeof ClaimResult>

const stakePath = (providerPubkey: string) => `/providers/${providerPubkey}`

export function getStake(client: ApiClient, providerPubkey: string): Promise<StakeInfo> {
  return client.get(`${stakePath(providerPubkey)}/stake`, {schema: StakeInfo, public: true})
}

/** `amount` is a canonical decimal string (see core/decimal.ts). */
export function depositStake(client: ApiClient, providerPubkey: string, amount: string): Promise<StakeInfo> {
  return client.post(`${stakePath(providerPubkey)}/stake`, {schema: StakeInfo, body: {amount}})
}

export function unstake(client: ApiClient, providerPubkey: string, amount: string): Promise<StakeInfo> {
  return client.post(`${stakePath(providerPubkey)}/unstake`, {schema: StakeInfo, body: {amount}})
}

export function claimRewards(client: ApiClient, providerPubkey: string): Promise<ClaimResult> {
  return client.post(`${stakePath(providerPubkey)}/rewards/claim`, {schema: ClaimResult})
}
