import {bidCommitment} from '../core/auction.js'
import {formatAmount, parseAmount} from '../core/decimal.js'
import type {MarketplaceContext} from './context.js'
import {HttpError} from './http-error.js'

/** What the auction needs of a job (a row of the jobs book). */
export interface AuctionJob {
  job_id: string
  max_fee_micro: string | null
  bid_closes_at: number | null
  reveal_closes_at: number | null
  auction_closed: number
  winner_pubkey: string | null
  clearing_fee_micro: string | null
}

interface CommitmentRow {
  job_id: string
  provider_pubkey: string
  agent_pubkey: string
  commitment: string
  committed_at: number
  fee: string | null
  revealed_at: number | null
  reveal_seq: number | null
}

export type AuctionPhase = 'bidding' | 'revealing' | 'closed'

export interface AuctionView {
  job_id: string
  phase: AuctionPhase
  bid_closes_at: number
  reveal_closes_at: number
  /** One per provider that committed (its latest commitment). */
  bids: {provider_pubkey: string; commitment: string; committed_at: number}[]
  /** Who revealed; the fees only once the auction is closed. */
  reveals: {provider_pubkey: string; revealed_at: number; fee?: string}[]
  winner?: string
  clearing_fee?: string
}

export interface AuctionOutcome {
  winner: string
  clearingFeeMicro: bigint
}

export function auctionPhase(job: AuctionJob, now: number): AuctionPhase {
  if (job.auction_closed === 1 || now >= (job.reveal_closes_at ?? 0)) return 'closed'
  return now < (job.bid_closes_at ?? 0) ? 'bidding' : 'revealing'
}

/**
 * §13 sealed-bid (Vickrey) auctions on jobs: commitments until `bid_closes_at` (a provider's later one replaces its
 * earlier), reveals checked against them until `reveal_closes_at`, then the lowest revealed fee wins (the earliest
 * reveal on a tie) and is paid the second lowest revealed fee, or its own when it was alone. The jobs book closes
 * auctions (by timer and on access) and hands the job to the winner alone.
 */
export class AuctionBook {
  private readonly statements

  constructor(private readonly context: MarketplaceContext) {
    const {db} = context
    this.statements = {
      commitments: db.prepare<[string], CommitmentRow>('SELECT * FROM job_commitments WHERE job_id = ? ORDER BY committed_at, provider_pubkey'),
      own: db.prepare<[string, string], CommitmentRow>('SELECT * FROM job_commitments WHERE job_id = ? AND provider_pubkey = ?'),
      upsert: db.prepare(
        `INSERT INTO job_commitments (job_id, provider_pubkey, agent_pubkey, commitment, committed_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (job_id, provider_pubkey) DO UPDATE SET agent_pubkey = excluded.agent_pubkey, commitment = excluded.commitment,
           committed_at = excluded.committed_at`,
      ),
      nextRevealSeq: db.prepare<[string], number>('SELECT coalesce(max(reveal_seq), 0) + 1 FROM job_commitments WHERE job_id = ?').pluck(),
      reveal: db.prepare('UPDATE job_commitments SET fee = ?, revealed_at = ?, reveal_seq = ? WHERE job_id = ? AND provider_pubkey = ?'),
      revealed: db.prepare<[string], CommitmentRow>('SELECT * FROM job_commitments WHERE job_id = ? AND revealed_at IS NOT NULL'),
      unrevealed: db
        .prepare<[string, number, number], number>(
          `SELECT count(*) FROM job_commitments c JOIN jobs j ON j.job_id = c.job_id
           WHERE c.provider_pubkey = ? AND c.revealed_at IS NULL AND j.auction_closed = 1 AND j.reveal_closes_at >= ? AND j.reveal_closes_at <= ?`,
        )
        .pluck(),
    }
  }

  /** §13: a commitment before `bid_closes_at`, replacing this provider's earlier one; 409 `bidding_closed` after. */
  commit(job: AuctionJob, providerPubkey: string, agentPubkey: string, commitment: string): {job_id: string; provider_pubkey: string; commitment: string; committed_at: number} {
    const now = this.context.clock.now()
    if (auctionPhase(job, now) !== 'bidding') throw new HttpError(409, 'bidding_closed', `bidding on this job closed at ${job.bid_closes_at}`)
    this.statements.upsert.run(job.job_id, providerPubkey, agentPubkey, commitment, now)
    return {job_id: job.job_id, provider_pubkey: providerPubkey, commitment, committed_at: now}
  }

  /**
   * §13: a reveal between `bid_closes_at` and `reveal_closes_at` that matches the commitment (422
   * `commitment_mismatch`) with a fee at most the job's `max_fee` (409 `fee_above_max`). Revealing the same again is
   * a no-op.
   */
  reveal(job: AuctionJob, providerPubkey: string, fee: string, salt: string): {job_id: string; provider_pubkey: string; fee: string; revealed_at: number} {
    const now = this.context.clock.now()
    const phase = auctionPhase(job, now)
    if (phase === 'bidding') throw new HttpError(409, 'bidding_open', `reveals open when bidding closes, at ${job.bid_closes_at}`)
    if (phase === 'closed') throw new HttpError(409, 'reveal_closed', `reveals closed at ${job.reveal_closes_at}`)
    const own = this.statements.own.get(job.job_id, providerPubkey)
    if (!own) throw new HttpError(409, 'no_commitment', 'this provider made no commitment on this job')
    if (bidCommitment(job.job_id, providerPubkey, fee, salt) !== own.commitment) {
      throw new HttpError(422, 'commitment_mismatch', 'sha256 of outpost-bid-v1, the job, this provider, the fee and the salt is not the commitment')
    }
    if (parseAmount(fee) > BigInt(job.max_fee_micro ?? '0')) {
      throw new HttpError(409, 'fee_above_max', `the fee ${fee} is above the job's max_fee ${formatAmount(BigInt(job.max_fee_micro ?? '0'))}`)
    }
    if (own.revealed_at !== null && own.fee === fee) return {job_id: job.job_id, provider_pubkey: providerPubkey, fee, revealed_at: own.revealed_at}
    this.statements.reveal.run(fee, now, this.statements.nextRevealSeq.get(job.job_id) ?? 1, job.job_id, providerPubkey)
    return {job_id: job.job_id, provider_pubkey: providerPubkey, fee, revealed_at: now}
  }

  /** Where this provider stands in the auction: no commitment, committed, or revealed. */
  standing(jobId: string, providerPubkey: string): 'none' | 'committed' | 'revealed' {
    const own = this.statements.own.get(jobId, providerPubkey)
    if (!own) return 'none'
    return own.revealed_at === null ? 'committed' : 'revealed'
  }

  /** The winner and the clearing fee of an auction whose reveals have closed; undefined when nobody revealed. */
  outcome(jobId: string): AuctionOutcome | undefined {
    const ranked = this.statements.revealed.all(jobId).sort((a, b) => {
      const difference = parseAmount(a.fee ?? '0') - parseAmount(b.fee ?? '0')
      if (difference !== 0n) return difference < 0n ? -1 : 1
      return (a.reveal_seq ?? 0) - (b.reveal_seq ?? 0)
    })
    const [first, second] = ranked
    if (!first) return undefined
    return {winner: first.provider_pubkey, clearingFeeMicro: parseAmount((second ?? first).fee ?? '0')}
  }

  /** §13 SLA: commitments this provider never revealed, in auctions closed within the window. */
  unrevealed(providerPubkey: string, since: number, until: number): number {
    return this.statements.unrevealed.get(providerPubkey, since, until) ?? 0
  }

  view(job: AuctionJob): AuctionView {
    const phase = auctionPhase(job, this.context.clock.now())
    const commitments = this.statements.commitments.all(job.job_id)
    const closed = job.auction_closed === 1
    return {
      job_id: job.job_id,
      phase,
      bid_closes_at: job.bid_closes_at ?? 0,
      reveal_closes_at: job.reveal_closes_at ?? 0,
      bids: commitments.map((row) => ({provider_pubkey: row.provider_pubkey, commitment: row.commitment, committed_at: row.committed_at})),
      reveals: commitments
        .filter((row) => row.revealed_at !== null)
        .sort((a, b) => (a.reveal_seq ?? 0) - (b.reveal_seq ?? 0))
        .map((row) => ({provider_pubkey: row.provider_pubkey, revealed_at: row.revealed_at ?? 0, ...(closed && row.fee !== null ? {fee: row.fee} : {})})),
      ...(job.winner_pubkey ? {winner: job.winner_pubkey} : {}),
      ...(job.clearing_fee_micro ? {clearing_fee: formatAmount(BigInt(job.clearing_fee_micro))} : {}),
    }
  }
}
