import {randomHex, sha256Hex} from './signing.js'

/**
 * PROTOCOL §13: a sealed bid. The commitment hides the fee behind a random salt until the provider reveals both;
 * the fee is hashed exactly as it will be revealed (a decimal string), so "12.5" and "12.50" are different bids.
 */
export function bidCommitmentText(jobId: string, providerPubkey: string, fee: string, salt: string): string {
  return ['outpost-bid-v1', jobId, providerPubkey, fee, salt].join('\n')
}

export function bidCommitment(jobId: string, providerPubkey: string, fee: string, salt: string): string {
  return sha256Hex(bidCommitmentText(jobId, providerPubkey, fee, salt))
}

/** 32 random bytes, hex: a fresh salt for each commitment. */
export function newBidSalt(): string {
  return randomHex(32)
}
