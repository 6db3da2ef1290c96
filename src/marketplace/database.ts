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
  // §§12–14 jobs, leases, sealed-bid auctions, attestation keys. A provider's stake gains a locked part (collateral of
  // its active leases) and its heartbeat's status, leases and free capacity. Program, input and output bytes are
  // BLOBs (at most 16 MiB each). At most one lease per job is active or submitted (the partial unique index).
  `
  ALTER TABLE providers ADD COLUMN locked_micro TEXT NOT NULL DEFAULT '0';
  ALTER TABLE providers ADD COLUMN heartbeat_status TEXT;
  ALTER TABLE providers ADD COLUMN active_leases INTEGER;
  ALTER TABLE providers ADD COLUMN free_capacity TEXT;
  CREATE TABLE programs (
    digest TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    uploaded_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,
    requester_pubkey TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('zk_proof', 'quantum_circuit', 'container')),
    program_digest TEXT NOT NULL REFERENCES programs(digest),
    input BLOB NOT NULL,
    input_digest TEXT NOT NULL,
    cpu_cores INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    gpu_count INTEGER NOT NULL,
    gpu_model TEXT,
    reward_mode TEXT NOT NULL CHECK (reward_mode IN ('fixed', 'auction')),
    reward_micro TEXT,
    max_fee_micro TEXT,
    collateral_micro TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    lease_seconds INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    attempts_used INTEGER NOT NULL DEFAULT 0,
    requires_attestation INTEGER NOT NULL,
    expect_public_signals TEXT,
    bid_closes_at INTEGER,
    reveal_closes_at INTEGER,
    auction_closed INTEGER NOT NULL DEFAULT 0,
    winner_pubkey TEXT,
    clearing_fee_micro TEXT,
    status TEXT NOT NULL CHECK (status IN ('open', 'leased', 'completed', 'failed', 'cancelled')),
    status_reason TEXT,
    updated_at INTEGER NOT NULL,
    trap_answer TEXT,
    result_lease_id TEXT
  );
  CREATE INDEX jobs_by_status ON jobs(status, deadline);
  CREATE TABLE leases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    lease_id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL REFERENCES jobs(job_id),
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    agent_pubkey TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'submitted', 'accepted', 'rejected', 'expired', 'failed')),
    leased_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    collateral_micro TEXT NOT NULL,
    forfeited_micro TEXT,
    envelope TEXT,
    submitted_at INTEGER,
    reason TEXT,
    reason_detail TEXT,
    reward_micro TEXT,
    retryable INTEGER,
    ended_at INTEGER,
    trap INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX leases_one_live_per_job ON leases(job_id) WHERE status IN ('active', 'submitted');
  CREATE INDEX leases_by_provider ON leases(provider_pubkey, status, leased_at);
  CREATE INDEX leases_by_expiry ON leases(status, expires_at);
  CREATE TABLE lease_outputs (
    lease_id TEXT NOT NULL REFERENCES leases(lease_id),
    digest TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (lease_id, digest)
  );
  CREATE TABLE job_commitments (
    job_id TEXT NOT NULL REFERENCES jobs(job_id),
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    agent_pubkey TEXT NOT NULL,
    commitment TEXT NOT NULL,
    committed_at INTEGER NOT NULL,
    fee TEXT,
    revealed_at INTEGER,
    reveal_seq INTEGER,
    PRIMARY KEY (job_id, provider_pubkey)
  );
  CREATE TABLE attestation_keys (
    agent_pubkey TEXT PRIMARY KEY,
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    type TEXT NOT NULL,
    ak_public_pem TEXT NOT NULL,
    ek_certificate_pem TEXT,
    pcr_selection TEXT NOT NULL,
    expected_pcr_digest TEXT,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE used_quotes (
    quote_digest TEXT PRIMARY KEY,
    lease_id TEXT NOT NULL,
    used_at INTEGER NOT NULL
  );
  `,
  // §6: a contract (and the order it may come from) keeps its renter's signed request as received, as JSON
  // {host, timestamp, nonce, body_b64, signature}; null for rows made before.
  `
  ALTER TABLE contracts ADD COLUMN request TEXT;
  ALTER TABLE orders ADD COLUMN request TEXT;
  CREATE INDEX benchmark_challenges_by_provider ON benchmark_challenges(provider_pubkey, expires_at);
  CREATE INDEX health_by_contract ON health_checks(contract_id, checked_at);
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
  // Devnet addition to §5: when each agent key last signed a heartbeat, listed with its delegation (`keys list`).
  `
  ALTER TABLE delegations ADD COLUMN last_seen_at INTEGER;
  `,
  // §5: the agent keys whose last heartbeat said `draining`: such an agent is handed no new contracts, while its
  // siblings (other agent keys of the provider) still are.
  `
  CREATE TABLE draining_agents (
    agent_pubkey TEXT PRIMARY KEY,
    provider_pubkey TEXT NOT NULL REFERENCES providers(pubkey),
    since INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // §2's replay store as a log a row is appended to (its index is in memory: NonceStore), oldest first.
  `
  CREATE TABLE nonce_log (
    seen_at INTEGER NOT NULL,
    signer TEXT NOT NULL,
    nonce TEXT NOT NULL
  );
  INSERT INTO nonce_log (seen_at, signer, nonce) SELECT seen_at, signer, nonce FROM nonces ORDER BY seen_at;
  DROP TABLE nonces;
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
