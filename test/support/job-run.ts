import Database from 'better-sqlite3'
import {join} from 'node:path'

import {readJournal, journalPath} from '../../src/agent/journal.js'
import type {ApiClient} from '../../src/core/api/client.js'
import {canonicalJson, type KeyPair} from '../../src/core/signing.js'
import {submitJob, type JobExample} from '../../src/devnet/jobs.js'
import {DATABASE_FILE_NAME} from '../../src/marketplace/database.js'
import {client, fastAgentEnv} from './marketplace.js'

/**
 * What an end-to-end run of the job loop must leave, read from the devnet's own database (the marketplace's truth)
 * and from the agents' journals: the invariants the job tests check.
 */

export interface JobRow {
  job_id: string
  kind: string
  status: string
  trap: number
  requester_pubkey: string
  reward_micro: string | null
  collateral_micro: string
  created_at: number
}

export interface LeaseRow {
  lease_id: string
  job_id: string
  provider_pubkey: string
  status: string
  leased_at: number
  ended_at: number | null
  reason: string | null
  reward_micro: string | null
  forfeited_micro: string | null
  envelope: string | null
  trap: number
}

export interface ProviderBalances {
  staked_micro: string
  locked_micro: string
  rewards_pending_micro: string
  /** The last heartbeat's, as JSON. */
  capabilities: string | null
  capacity: string | null
  free_capacity: string | null
  active_leases: number | null
}

/** The devnet's jobs, leases and a provider's balances, read from its SQLite file beside the running server. */
export function readJobMarket(dataDir: string): {jobs: JobRow[]; leases: LeaseRow[]; balances: (pk: string) => ProviderBalances} {
  const db = new Database(join(dataDir, DATABASE_FILE_NAME), {readonly: true, fileMustExist: true})
  try {
    const jobs = db.prepare<[], JobRow>('SELECT job_id, kind, status, trap_answer IS NOT NULL AS trap, requester_pubkey, reward_micro, collateral_micro, created_at FROM jobs').all()
    const leases = db
      .prepare<[], LeaseRow>('SELECT lease_id, job_id, provider_pubkey, status, leased_at, ended_at, reason, reward_micro, forfeited_micro, envelope, trap FROM leases ORDER BY seq')
      .all()
    const providers = new Map(
      db.prepare<[], ProviderBalances & {pubkey: string}>('SELECT pubkey, staked_micro, locked_micro, rewards_pending_micro, capabilities, capacity, free_capacity, active_leases FROM providers').all().map((row) => [row.pubkey, row]),
    )
    return {
      jobs,
      leases,
      balances: (pk) => {
        const row = providers.get(pk)
        if (!row) throw new Error(`no provider ${pk}`)
        return row
      },
    }
  } finally {
    db.close()
  }
}

/** Jobs of the example kinds, opened by a renter as `outpost devnet job create --example ...` does. */
export async function openExampleJobs(
  renter: ApiClient,
  example: JobExample,
  count: number,
  options: {reward?: string; collateral?: string; leaseSeconds?: number; deadlineSeconds?: number; maxAttempts?: number} = {},
): Promise<string[]> {
  const ids: string[] = []
  for (let index = 0; index < count; index++) {
    const job = await submitJob(renter, {
      example,
      shots: 256,
      reward: {mode: 'fixed', amount: options.reward ?? '1.5'},
      collateral: options.collateral ?? '2',
      deadlineSeconds: options.deadlineSeconds ?? 600,
      leaseSeconds: options.leaseSeconds ?? 60,
      maxAttempts: options.maxAttempts ?? 3,
      resources: {cpu_cores: 1, memory_mb: 256, gpu_count: 0},
      requiresAttestation: false,
    })
    ids.push(job.job_id)
  }
  return ids
}

export function renterClient(endpoint: string, key: KeyPair): ApiClient {
  return client(endpoint, key)
}

/** The agent settings of a job-serving agent, through OUTPOST_* variables as an operator would set them. */
export function jobAgentEnv(configDir: string, overrides: Record<string, string> = {}): Record<string, string> {
  return fastAgentEnv(configDir, {
    OUTPOST_JOBS_ENABLED: 'true',
    OUTPOST_JOBS_KINDS: '["zk_proof","quantum_circuit"]',
    OUTPOST_JOBS_MAX_CONCURRENT: '2',
    OUTPOST_AGENT_LONG_POLL_WAIT_SECONDS: '2',
    ...overrides,
  })
}

/** Every envelope the agent signed, by lease id (one entry per `result_signed` line of its journal). */
export function signedEnvelopes(stateDir: string): Map<string, string[]> {
  const signed = new Map<string, string[]>()
  for (const entry of readJournal(journalPath(stateDir)).entries) {
    if (entry.event !== 'result_signed') continue
    signed.set(entry.lease_id, [...(signed.get(entry.lease_id) ?? []), canonicalJson(entry.envelope)])
  }
  return signed
}

/** Sums of micro-token amounts. */
export function sumMicro(values: readonly (string | null)[]): bigint {
  return values.reduce((total, value) => total + BigInt(value ?? '0'), 0n)
}
