import {z} from 'zod'

import {RESPONSE_LIMITS, type ApiClient} from './client.js'
import {hexString, PublicKeyHex, UnixMs} from './schemas.js'

/** PROTOCOL §9: benchmark challenges and reports. */

export const BenchmarkChallenge = z.object({
  challenge_id: hexString(16),
  seed: hexString(32),
  expires_at: UnixMs,
})
export type BenchmarkChallenge = z.infer<typeof BenchmarkChallenge>

const JsonObject = z.record(z.string(), z.unknown())

/** §9 names only what a report is made of; what a marketplace adds (id, signer, time) is read when present. */
export const BenchmarkReport = z.object({
  report_id: z.string().min(1).optional(),
  provider_pubkey: PublicKeyHex.optional(),
  challenge_id: hexString(16),
  machine: JsonObject,
  results: JsonObject,
  work_digest: hexString(32),
  submitted_by: PublicKeyHex.optional(),
  created_at: UnixMs.optional(),
  verified: z.boolean().optional(),
})
export type BenchmarkReport = z.infer<typeof BenchmarkReport>

export interface BenchmarkReportBody {
  challenge_id: string
  machine: Record<string, unknown>
  results: Record<string, unknown>
  work_digest: string
}

const benchmarksPath = (providerPubkey: string) => `/providers/${providerPubkey}/benchmarks`

export function requestChallenge(client: ApiClient, providerPubkey: string): Promise<BenchmarkChallenge> {
  return client.post(`${benchmarksPath(providerPubkey)}/challenges`, {schema: BenchmarkChallenge})
}

export function submitReport(client: ApiClient, providerPubkey: string, body: BenchmarkReportBody): Promise<BenchmarkReport> {
  return client.post(benchmarksPath(providerPubkey), {schema: BenchmarkReport, body})
}

export async function listReports(client: ApiClient, providerPubkey: string): Promise<BenchmarkReport[]> {
  const answer = await client.get(benchmarksPath(providerPubkey), {schema: z.object({reports: z.array(BenchmarkReport)}), public: true, maxResponseBytes: RESPONSE_LIMITS.list})
  return answer.reports
}
