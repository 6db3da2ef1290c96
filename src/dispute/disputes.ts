import {getDispute, submitEvidence, type EvidenceItem, type ProviderDispute} from '../core/api/disputes.js'
import {ExitCode, UserError} from '../core/errors.js'
import type {ProviderSession} from '../core/api/session.js'
import type {EvidenceDraft} from './evidence.js'

/** A dispute that can still be answered (evidence, or accepting it), checked before anything is shown or asked. */
export async function answerableDispute(session: ProviderSession, disputeId: string): Promise<ProviderDispute> {
  const dispute = await getDispute(session.client, disputeId)
  if (dispute.status === 'accepted') {
    throw new UserError(`dispute ${dispute.dispute_id} is already accepted`, {code: 'dispute_accepted', suggestion: 'an accepted dispute takes no more evidence and needs no answer'})
  }
  return dispute
}

/** What a submission would add to a dispute: only what it doesn't hold yet, since evidence is kept by its hash. */
export interface EvidencePlan {
  provider_response: string
  /** The items the dispute doesn't hold yet: the ones sent. */
  evidence: EvidenceItem[]
  /** Items left out because the dispute holds their hash already (submitted before). */
  already_submitted: number
  /** Whether sending changes anything: a new item, or another response. */
  changes: boolean
}

export function planEvidence(dispute: ProviderDispute, draft: EvidenceDraft, response: string | undefined): EvidencePlan {
  const providerResponse = response ?? draft.provider_response
  if (!providerResponse) {
    throw new UserError("the evidence needs a response: the provider's account of what happened", {
      code: 'response_required',
      exit: ExitCode.usage,
      suggestion: 'pass --response "..." or put provider_response in the evidence file',
    })
  }
  const held = new Set(dispute.evidence.map((item) => item.hash))
  const fresh = draft.evidence.filter((item) => !held.has(item.hash) && held.add(item.hash))
  return {
    provider_response: providerResponse,
    evidence: fresh,
    already_submitted: draft.evidence.length - fresh.length,
    changes: fresh.length > 0 || providerResponse !== dispute.provider_response,
  }
}

export function sendEvidence(session: ProviderSession, disputeId: string, plan: EvidencePlan): Promise<ProviderDispute> {
  return submitEvidence(session.client, disputeId, {provider_response: plan.provider_response, evidence: plan.evidence})
}

/** One line per dispute for a table. */
export function disputeRow(dispute: ProviderDispute): string[] {
  const description = dispute.description.replace(/\s+/g, ' ')
  return [
    dispute.dispute_id,
    dispute.contract_id,
    dispute.type,
    dispute.status,
    dispute.created_at === undefined ? '-' : new Date(dispute.created_at).toISOString().replace(/\.\d+Z$/, 'Z'),
    description.length > 48 ? description.slice(0, 47) + '…' : description,
  ]
}

export const DISPUTE_HEADER = ['dispute', 'contract', 'type', 'status', 'opened', 'description']

export function evidenceRows(evidence: ProviderDispute['evidence']): string[][] {
  return evidence.map((item, index) => [String(index + 1), item.type, item.hash.slice(0, 16) + '…', item.description.length > 90 ? item.description.slice(0, 89) + '…' : item.description])
}

export const EVIDENCE_HEADER = ['#', 'type', 'sha256', 'description']
