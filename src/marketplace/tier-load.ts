import type {Db} from './database.js'

/**
 * What a provider holds against its stake tier's limit (§8, §12): the contracts it provisions or runs (or still has to
 * terminate) and its active and submitted leases. The contract book and the jobs book both count with this one rule,
 * so a provider busy with jobs gets no more contracts than its tier allows, and the other way round.
 */
export function tierLoadCounter(db: Db): (providerPubkey: string) => number {
  const count = db
    .prepare<[string, string], number>(
      `SELECT (SELECT count(*) FROM contracts WHERE provider_pubkey = ? AND (status IN ('provisioning', 'provisioned', 'active')
                 OR (termination_pending = 1 AND provisioned_at IS NOT NULL)))
            + (SELECT count(*) FROM leases WHERE provider_pubkey = ? AND status IN ('active', 'submitted'))`,
    )
    .pluck()
  return (providerPubkey) => count.get(providerPubkey, providerPubkey) ?? 0
}
