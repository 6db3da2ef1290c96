import {appendFileSync, existsSync, mkdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {ResultEnvelope} from './api/job-schemas.js'
import {canonicalJson, verifyResultEnvelope, type SignedResultEnvelope} from './signing.js'

/**
 * The signed result envelopes (PROTOCOL §12) an agent submitted, kept in its state dir by job: one JSON line per
 * envelope in `results/<job_id>.jsonl`. The job loop appends each envelope before it is posted; `dispute evidence
 * --auto` and `jobs show` read them back. An envelope is evidence on its own (it verifies without the marketplace),
 * so the archive is append-only: a job leased twice (a lease failed or expired, then taken again) has two lines.
 */

const JOB_ID = /^[0-9a-f]{32}$/

export function resultArchiveDir(stateDir: string): string {
  return join(stateDir, 'results')
}

function archiveFile(stateDir: string, jobId: string): string {
  // A job id names a file: only the 32 hex characters of §12 may, so no id can reach outside the folder.
  if (!JOB_ID.test(jobId)) throw new Error(`not a job id: ${jobId}`)
  return join(resultArchiveDir(stateDir), `${jobId}.jsonl`)
}

/** Appends an envelope to its job's file; the same envelope twice is kept once. */
export function archiveResultEnvelope(stateDir: string, envelope: SignedResultEnvelope): void {
  const line = canonicalJson(envelope)
  if (readArchiveLines(stateDir, envelope.job_id).includes(line)) return
  mkdirSync(resultArchiveDir(stateDir), {recursive: true, mode: 0o700})
  appendFileSync(archiveFile(stateDir, envelope.job_id), line + '\n', {mode: 0o600})
}

function readArchiveLines(stateDir: string, jobId: string): string[] {
  const file = archiveFile(stateDir, jobId)
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').split('\n').filter((line) => line.trim().length > 0)
}

export interface ArchivedResults {
  envelopes: SignedResultEnvelope[]
  /** Lines that are not an envelope of this job, or whose signature does not verify: left out. */
  skipped: number
}

/** The envelopes kept for a job, each checked: the job's, well formed, and signed by its signer. */
export function readResultEnvelopes(stateDir: string, jobId: string): ArchivedResults {
  const envelopes: SignedResultEnvelope[] = []
  let skipped = 0
  for (const line of readArchiveLines(stateDir, jobId)) {
    let parsed: unknown
    try {
      parsed = JSON.parse(line)
    } catch {
      skipped++
      continue
    }
    const envelope = ResultEnvelope.safeParse(parsed)
    if (envelope.success && envelope.data.job_id === jobId && verifyResultEnvelope(envelope.data)) envelopes.push(envelope.data)
    else skipped++
  }
  return {envelopes, skipped}
}
