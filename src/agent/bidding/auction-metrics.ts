import {Counter, Gauge, Histogram, type Registry} from 'prom-client'

/** The §13 auction engine's metrics, registered on the agent's registry when [jobs.bidding] is on. */
export interface AuctionMetrics {
  /** One count per job decided: committed (reason: the strategy) or declined (reason: the filter). */
  decisions: Counter<'decision' | 'reason'>
  /** Every later step: revealed, won, lost, missed (no reveal in the window), abandoned, leased, done. */
  outcomes: Counter<'outcome'>
  committedFee: Histogram
  clearingFee: Histogram
  /** Jobs committed to or won and not done: what max_concurrent counts. */
  promised: Gauge
}

const FEE_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 100]

export function createAuctionMetrics(registry: Registry): AuctionMetrics {
  const registers = [registry]
  return {
    decisions: new Counter({
      name: 'outpost_agent_auction_decisions_total',
      help: 'Auction jobs decided: committed (reason: the strategy) or declined (reason: the filter that declined it)',
      labelNames: ['decision', 'reason'],
      registers,
    }),
    outcomes: new Counter({
      name: 'outpost_agent_auction_outcomes_total',
      help: 'Auction steps after a commitment: revealed, won, lost, missed, abandoned, leased, done',
      labelNames: ['outcome'],
      registers,
    }),
    committedFee: new Histogram({name: 'outpost_agent_auction_committed_fee', help: 'Fees committed to, in tokens', buckets: FEE_BUCKETS, registers}),
    clearingFee: new Histogram({name: 'outpost_agent_auction_clearing_fee', help: 'Clearing fees of auctions won (what the winner is paid), in tokens', buckets: FEE_BUCKETS, registers}),
    promised: new Gauge({name: 'outpost_agent_auction_promised_jobs', help: 'Auction jobs committed to or won and not done (counted against max_concurrent)', registers}),
  }
}
