import Database from 'better-sqlite3'
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'

export type Db = Database.Database

export const DATABASE_FILE_NAME = 'marketplace.sqlite'

/**
 * Versioned migrations: the one at index i takes the schema from version i to i + 1 (PRAGMA user_version).
 * Never edit an applied one; append a new one. Amounts are TEXT holding integer micro-units (BigInt in JS):
 * they can exceed SQLite's 64-bit integers and must never pass through a float.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE providers (
    pubkey TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    contact_email TEXT NOT NULL,
    website TEXT,
    regions TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'paused')),
    status_reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    heartbeat_at INTEGER,
    agent_version TEXT,
    provisioner_type TEXT,
    capabilities TEXT,
    active_contracts INTEGER,
    capacity TEXT,
    staked_micro TEXT NOT NULL DEFAULT '0',
    rewards_pending_micro TEXT NOT NULL DEFAULT '0'
  );
  CREATE TABLE delegations (
    agent_pubkey TEXT PRIMARY KEY,
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    permissions TEXT NOT NULL,
    expires_at INTEGER,
    label TEXT NOT NULL,
    signature TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  CREATE INDEX delegations_by_provider ON delegations(provider_pubkey);
  CREATE TABLE nonces (
    signer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (signer, nonce)
  ) WITHOUT ROWID;
  CREATE INDEX nonces_by_age ON nonces(seen_at);
  CREATE TABLE offerings (
    offering_id TEXT PRIMARY KEY,
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    name TEXT NOT NULL,
    product_type TEXT NOT NULL,
    cpu_cores INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    storage_gb INTEGER NOT NULL,
    gpu_count INTEGER NOT NULL,
    price_per_hour_micro TEXT NOT NULL,
    region TEXT,
    provisioner TEXT,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE contracts (
    contract_id TEXT PRIMARY KEY,
    offering_id TEXT NOT NULL REFERENCES offerings(offering_id),
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    requester_pubkey TEXT NOT NULL,
    product_type TEXT NOT NULL,
    cpu_cores INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    storage_gb INTEGER NOT NULL,
    gpu_count INTEGER NOT NULL,
    price_per_hour_micro TEXT NOT NULL,
    ssh_pubkey TEXT NOT NULL,
    instance_config TEXT,
    duration_hours INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    termination_pending INTEGER NOT NULL DEFAULT 0,
    provisioning_attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    refunded INTEGER NOT NULL DEFAULT 0,
    instance TEXT,
    provisioned_at INTEGER,
    ended_at INTEGER,
    lock_holder TEXT,
    lock_expires_at INTEGER
  );
  CREATE INDEX contracts_by_provider_status ON contracts(provider_pubkey, status);
  CREATE INDEX contracts_by_end ON contracts(status, ends_at);
  CREATE TABLE unbonding (
    id INTEGER PRIMARY KEY,
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    amount_micro TEXT NOT NULL,
    release_at INTEGER NOT NULL
  );
  CREATE TABLE health_checks (
    id INTEGER PRIMARY KEY,
    provider_pubkey TEXT NOT NULL,
    contract_id TEXT NOT NULL,
    status TEXT NOT NULL,
    uptime_seconds INTEGER,
    checked_at INTEGER NOT NULL,
    details TEXT
  );
  CREATE INDEX health_by_provider_time ON health_checks(provider_pubkey, checked_at);
  CREATE TABLE usage_records (
    provider_pubkey TEXT NOT NULL,
    record_id TEXT NOT NULL,
    contract_id TEXT NOT NULL,
    record TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (provider_pubkey, record_id)
  );
  CREATE TABLE benchmark_challenges (
    challenge_id TEXT PRIMARY KEY,
    provider_pubkey TEXT NOT NULL,
    seed TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
  );
  CREATE TABLE benchmark_reports (
    report_id TEXT PRIMARY KEY,
    provider_pubkey TEXT NOT NULL,
    challenge_id TEXT NOT NULL UNIQUE,
    machine TEXT NOT NULL,
    results TEXT NOT NULL,
    work_digest TEXT NOT NULL,
    submitted_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE disputes (
    dispute_id TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES contracts(contract_id),
    provider_pubkey TEXT NOT NULL,
    requester_pubkey TEXT NOT NULL,
    type TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_response TEXT,
    evidence TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX disputes_by_provider ON disputes(provider_pubkey, status);
  `,
  // §11 orders and bids. A won order becomes an offering (offering_id = order_id, hidden from GET /offerings) and
  // an ordinary contract of that offering, so the contract keeps its offering reference.
  `
  CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    requester_pubkey TEXT NOT NULL,
    cpu_cores INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    storage_gb INTEGER NOT NULL,
    gpu_count INTEGER NOT NULL,
    gpu_model TEXT,
    max_price_per_hour_micro TEXT NOT NULL,
    duration_hours INTEGER NOT NULL,
    region TEXT,
    ssh_pubkey TEXT NOT NULL,
    instance_config TEXT,
    created_at INTEGER NOT NULL,
    closes_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'awarded', 'unfilled')),
    closed_at INTEGER,
    winning_bid_id TEXT,
    contract_id TEXT REFERENCES contracts(contract_id)
  );
  CREATE INDEX orders_by_status_close ON orders(status, closes_at);
  CREATE TABLE bids (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bid_id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL REFERENCES orders(order_id),
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    agent_pubkey TEXT NOT NULL,
    price_per_hour_micro TEXT NOT NULL,
    placed_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    UNIQUE (order_id, provider_pubkey)
  );
  `,
  // Devnet addition to §5: each agent's last heartbeat, by the agent id it sends, so siblings can tell a dead one.
  `
  CREATE TABLE agent_heartbeats (
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    agent_id TEXT NOT NULL,
    agent_pubkey TEXT NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    PRIMARY KEY (provider_pubkey, agent_id)
  ) WITHOUT ROWID;
  `,
]

export const SCHEMA_VERSION = MIGRATIONS.length

/** Brings a database to the current schema, one transaction per migration. */
export function migrate(db: Db): number {
  const current = db.pragma('user_version', {simple: true}) as number
  if (current > SCHEMA_VERSION) {
    throw new Error(`the database has schema version ${current}, newer than this outpost's ${SCHEMA_VERSION}`)
  }
  for (let version = current; version < SCHEMA_VERSION; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version] ?? '')
      db.pragma(`user_version = ${version + 1}`)
    })()
  }
  return SCHEMA_VERSION
}

/**
 * Opens (creating) the marketplace database in `dataDir`. WAL with synchronous=NORMAL: a committed transaction
 * survives the process being killed (the WAL write precedes the commit's return); only a power cut can drop the
 * last few commits, which a devnet accepts for not paying an fsync per request.
 */
export function openDatabase(dataDir: string): Db {
  mkdirSync(dataDir, {recursive: true, mode: 0o700})
  const db = new Database(join(dataDir, DATABASE_FILE_NAME))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.pragma('foreign_keys = ON')
  db.pragma('busy_timeout = 5000')
  migrate(db)
  return db
}
