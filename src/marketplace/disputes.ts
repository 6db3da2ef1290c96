import type {z} from 'zod'

import {randomHex} from '../core/signing.js'
import type {MarketplaceContext} from './context.js'
import {invalidTransition, notFound} from './http-error.js'
import type {DisputeBody, EvidenceBody} from './schemas.js'

type DisputeStatus = 'open' | 'responded' | 'accepted'
type Evidence = z.infer<typeof EvidenceBody>['evidence'][number]

interface DisputeRow {
  dispute_id: string
  contract_id: string
  provider_pubkey: string
  requester_pubkey: string
  type: string
  description: string
  status: DisputeStatus
  provider_response: string | null
  evidence: string
  created_at: number
  updated_at: number
}

export interface DisputeView {
  dispute_id: string
  contract_id: string
  provider_pubkey: string
  requester_pubkey: string
  type: string
  description: string
  /** open → responded (the provider sent evidence) → accepted (the provider accepted the claim). */
  status: DisputeStatus
  provider_response: string | null
  evidence: Evidence[]
  created_at: number
  updated_at: number
}

function disputeView(row: DisputeRow): DisputeView {
  return {...row, evidence: JSON.parse(row.evidence) as Evidence[]}
}

/** §10 disputes. Who may call what is decided by the routes; this keeps the states. */
export class DisputeBook {
  private readonly statements

  constructor(private readonly context: MarketplaceContext) {
    const {db} = context
    this.statements = {
      insert: db.prepare(
        `INSERT INTO disputes (dispute_id, contract_id, provider_pubkey, requester_pubkey, type, description, status, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)`,
      ),
      byId: db.prepare<[string], DisputeRow>('SELECT * FROM disputes WHERE dispute_id = ?'),
      byProvider: db.prepare<[string, string | null, string | null], DisputeRow>(
        'SELECT * FROM disputes WHERE provider_pubkey = ? AND (? IS NULL OR status = ?) ORDER BY created_at, dispute_id',
      ),
      respond: db.prepare("UPDATE disputes SET status = 'responded', provider_response = ?, evidence = ?, updated_at = ? WHERE dispute_id = ?"),
      accept: db.prepare("UPDATE disputes SET status = 'accepted', updated_at = ? WHERE dispute_id = ?"),
    }
  }

  open(contract: {contract_id: string; provider_pubkey: string; requester_pubkey: string}, body: z.infer<typeof DisputeBody>): DisputeView {
    const disputeId = randomHex(16)
    const now = this.context.clock.now()
    this.statements.insert.run(disputeId, contract.contract_id, contract.provider_pubkey, contract.requester_pubkey, body.type, body.description, now, now)
    return this.get(disputeId)
  }

  get(disputeId: string): DisputeView {
    const row = this.statements.byId.get(disputeId)
    if (!row) throw notFound('dispute')
    return disputeView(row)
  }

  list(providerPubkey: string, status: DisputeStatus | undefined): {disputes: DisputeView[]} {
    const filter = status ?? null
    return {disputes: this.statements.byProvider.all(providerPubkey, filter, filter).map(disputeView)}
  }

  /**
   * Evidence accumulates, idempotent by hash: an item whose hash the dispute already holds (a submission sent twice, a
   * retried request) is not added again. The latest response replaces the previous one.
   */
  addEvidence(disputeId: string, body: z.infer<typeof EvidenceBody>): DisputeView {
    const dispute = this.get(disputeId)
    if (dispute.status === 'accepted') throw invalidTransition('an accepted dispute takes no more evidence')
    const held = new Set(dispute.evidence.map((item) => item.hash))
    const evidence = [...dispute.evidence]
    for (const item of body.evidence) {
      if (held.has(item.hash)) continue
      held.add(item.hash)
      evidence.push(item)
    }
    this.statements.respond.run(body.provider_response, JSON.stringify(evidence), this.context.clock.now(), disputeId)
    return this.get(disputeId)
  }

  accept(disputeId: string): DisputeView {
    const dispute = this.get(disputeId)
    if (dispute.status === 'accepted') throw invalidTransition('this dispute is already accepted')
    this.statements.accept.run(this.context.clock.now(), disputeId)
    return this.get(disputeId)
  }
}
