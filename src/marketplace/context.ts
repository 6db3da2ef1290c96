import {EventEmitter} from 'node:events'

import type {Clock} from './clock.js'
import type {Db} from './database.js'

export const DEFAULT_UNBONDING_PERIOD_MS = 7 * 24 * 3600 * 1000
export const DEFAULT_HEARTBEAT_SECONDS = 60

export interface MarketplaceSettings {
  /** How long unstaked tokens stay bonded (PROTOCOL §8: 7 days by default). */
  unbondingPeriodMs: number
  /** The interval the heartbeat answer asks the agent to keep. */
  heartbeatSeconds: number
  /** §12 traps: how many known-answer jobs the devnet mixes in per renter job of a kind (0 for none). */
  trapRatio: number
  /** Benchmark challenges a provider may take per hour: each is one verified submission (§9). */
  benchmarkAttemptsPerHour: number
  /** Benchmark verifications started per minute, all providers together. */
  benchmarkVerificationsPerMinute: number
  /** Health checks kept per contract (§7); the oldest make room. */
  healthChecksPerContract: number
}

/**
 * Wakes long polls (§7): `notify(pk)` whenever something may have become pending for that provider. In-process,
 * so a waiting request answers within milliseconds instead of at a timer tick.
 */
export class PendingSignal {
  private readonly emitter = new EventEmitter()

  constructor() {
    // One listener per waiting request: any number of them is expected.
    this.emitter.setMaxListeners(0)
  }

  notify(providerPubkey: string): void {
    this.emitter.emit(providerPubkey)
  }

  subscribe(providerPubkey: string, listener: () => void): () => void {
    this.emitter.on(providerPubkey, listener)
    return () => this.emitter.off(providerPubkey, listener)
  }
}

export interface MarketplaceContext {
  db: Db
  clock: Clock
  pending: PendingSignal
  /** Wakes §11 order long polls: notified under OPEN_ORDERS_TOPIC when an order opens. */
  orders: PendingSignal
  /** Wakes §12 `jobs/open` long polls: notified under OPEN_JOBS_TOPIC when a job may have become open to someone. */
  jobs: PendingSignal
  settings: MarketplaceSettings
  /** Aborted when the server stops, before the database closes: books clear their timers. */
  lifetime: AbortSignal
  /** Where a failure with no request to answer (background work) is reported. */
  logError: (error: unknown) => void
}

export const OPEN_ORDERS_TOPIC = 'open-orders'
export const OPEN_JOBS_TOPIC = 'open-jobs'

/** Parses a JSON column written by this server. */
export function fromJsonColumn<T>(value: string | null): T | null {
  return value === null ? null : (JSON.parse(value) as T)
}
