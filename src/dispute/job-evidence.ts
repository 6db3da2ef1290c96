import type {ApiClient} from '../core/api/client.js'
import {ApiError} from '../core/api/api-error.js'
import type {EvidenceItem} from '../core/api/disputes.js'
import type {Verdict} from '../core/api/job-schemas.js'
import {getJob} from '../core/api/renter-jobs.js'
import {ExitCode, UserError} from '../core/errors.js'
import {readResultEnvelopes} from '../core/result-archive.js'
import {canonicalJson, sha256Hex, verifyResultEnvelope, type SignedResultEnvelope} from '../core/signing.js'
import type {EvidenceDraft} from './evidence.js'

/**
 * An envelope whose JSON is larger than this goes in by its hash alone: a submission is one request of at most 1 MiB
 * (PROTOCOL §2), and an envelope carries its output inline up to 512 KiB.
 */
export const MAX_ENVELOPE_EVIDENCE_BYTES = 256 * 1024

const at = (ms: number) => new Date(ms).toISOString()

function envelopeDescription(envelope: SignedResultEnvelope): string {
  return (
    `signed result envelope of job ${envelope.job_id}, lease ${envelope.lease_id}: output ${envelope.output.digest} (${envelope.output.size_bytes} bytes) ` +
    `of program ${envelope.program_digest.slice(0, 16)}… on input ${envelope.input_digest.slice(0, 16)}…, run ${at(envelope.started_at)} to ${at(envelope.finished_at)}; ` +
    'verify: Ed25519 by signer over "outpost-result-v1\\n" + canonical JSON without signature (PROTOCOL §12)'
  )
}

/**
 * `dispute evidence --auto --job ID`: the signed result envelopes of a job, from this host's agent (its state dir
 * keeps every envelope it submitted) and from the marketplace's record of the job (GET /jobs/{id} with the main key
 * gives the result it settled and its verdict). Each envelope verifies on its own; one that doesn't is left out.
 */
export async function evidenceFromJobs(options: {client: ApiClient; stateDir: string; jobIds: readonly string[]}): Promise<EvidenceDraft> {
  const evidence: EvidenceItem[] = []
  const notes: string[] = []
  let envelopeCount = 0
  for (const raw of options.jobIds) {
    const jobId = raw.toLowerCase()
    if (!/^[0-9a-f]{32}$/.test(jobId)) {
      throw new UserError(`--job ${raw}: not a job id (32 hex characters)`, {code: 'usage', exit: ExitCode.usage, suggestion: '`outpost jobs list` shows the jobs this provider leased'})
    }
    const {envelopes: kept, skipped} = readResultEnvelopes(options.stateDir, jobId)
    if (skipped > 0) notes.push(`job ${jobId}: ${skipped} kept envelope line(s) did not parse or verify and were left out`)
    let settled: {result: SignedResultEnvelope | null; verdict: Verdict | null} | undefined
    try {
      const job = await getJob(options.client, jobId)
      settled = {result: job.result ?? null, verdict: job.verdict ?? null}
    } catch (error) {
      if (!(error instanceof ApiError) || (error.status !== 403 && error.status !== 404)) throw error
      notes.push(`job ${jobId}: the marketplace shows it only to its requester or a provider that leased it (${error.status} ${error.apiCode})`)
    }
    const envelopes = new Map<string, SignedResultEnvelope>()
    for (const envelope of [...kept, ...(settled?.result ? [settled.result] : [])]) {
      if (!verifyResultEnvelope(envelope)) {
        notes.push(`job ${jobId}: an envelope of lease ${envelope.lease_id} does not verify and was left out`)
        continue
      }
      envelopes.set(sha256Hex(canonicalJson(envelope)), envelope)
    }
    if (envelopes.size === 0 && !settled?.verdict) {
      notes.push(`job ${jobId}: no signed result envelope here or at the marketplace`)
      continue
    }
    for (const [hash, envelope] of envelopes) {
      const whole = canonicalJson(envelope).length <= MAX_ENVELOPE_EVIDENCE_BYTES
      if (!whole) notes.push(`job ${jobId}: the envelope of lease ${envelope.lease_id} is over ${MAX_ENVELOPE_EVIDENCE_BYTES / 1024} KiB and goes in by its hash; it stays in the state dir`)
      evidence.push({type: 'result_envelope', description: envelopeDescription(envelope), hash, ...(whole ? {data: envelope} : {})})
      envelopeCount++
    }
    if (settled?.verdict && settled.result) {
      const data = {job_id: jobId, lease_id: settled.result.lease_id, verdict: settled.verdict}
      const said = `${settled.verdict.verdict}${settled.verdict.reason ? `: ${settled.verdict.reason}` : ''}${settled.verdict.reward ? `, ${settled.verdict.reward} paid` : ''}`
      evidence.push({type: 'job_verdict', description: `the marketplace's verdict on job ${jobId}, lease ${settled.result.lease_id}: ${said}`, hash: sha256Hex(canonicalJson(data)), data})
    }
  }
  if (evidence.length === 0) {
    throw new UserError(`no result envelopes for job(s) ${options.jobIds.join(', ')}`, {
      code: 'no_evidence',
      suggestion: "run this on the host whose agent ran the job (its [agent] state_dir), with the provider main key of the provider that leased it",
    })
  }
  const response = `Evidence from the provider's records of ${options.jobIds.length} job(s): ${envelopeCount} signed result envelope(s), each verifiable on its own.`
  return {provider_response: response, evidence, notes}
}
