import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {HttpError} from '../../src/marketplace/http-error.js'
import {NONCE_RETENTION_MS, NonceStore} from '../../src/marketplace/auth.js'
import {openDatabase, SCHEMA_VERSION, type Db} from '../../src/marketplace/database.js'

/** The §2 replay store: an index in memory over a log SQLite appends to, read back after a restart. */

const signer = 'a'.repeat(64)
const other = 'b'.repeat(64)
const nonce = (n: number) => n.toString(16).padStart(32, '0')
const START = 1_800_000_000_000

let dataDir: string
let db: Db

beforeEach(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'outpost-nonces-'))
  db = openDatabase(dataDir)
})
afterEach(() => {
  if (db.open) db.close()
  rmSync(dataDir, {recursive: true, force: true})
})

function refusal(use: () => void): {status: number; code: string} | undefined {
  try {
    use()
    return undefined
  } catch (error) {
    if (!(error instanceof HttpError)) throw error
    return {status: error.status, code: error.code}
  }
}

/** Each use in its own committed transaction, as the server's batches do. */
function useCommitted(store: NonceStore, key: string, value: string, now: number): void {
  db.exec('BEGIN IMMEDIATE')
  try {
    store.use(key, value, now)
  } finally {
    db.exec('COMMIT')
    store.committed()
  }
}

const logRows = () => db.prepare<[], {seen_at: number; signer: string; nonce: string}>('SELECT seen_at, signer, nonce FROM nonce_log ORDER BY rowid').all()

describe('the nonce store', () => {
  it('refuses a nonce its key used within the retention window, takes the same nonce from another key, and again once retention has passed', () => {
    const store = new NonceStore(db)
    useCommitted(store, signer, nonce(1), START)
    expect(refusal(() => store.use(signer, nonce(1), START + NONCE_RETENTION_MS - 1))).toEqual({status: 401, code: 'replayed_nonce'})
    useCommitted(store, other, nonce(1), START + 1)
    useCommitted(store, signer, nonce(1), START + NONCE_RETENTION_MS + 1)
    expect(store.size).toBe(2)
  })

  it('remembers across a restart, from the log alone', () => {
    const store = new NonceStore(db)
    useCommitted(store, signer, nonce(1), START)
    useCommitted(store, signer, nonce(2), START + 1)
    db.close()
    db = openDatabase(dataDir)
    const again = new NonceStore(db)
    expect(again.size).toBe(2)
    expect(refusal(() => again.use(signer, nonce(2), START + 2))).toEqual({status: 401, code: 'replayed_nonce'})
  })

  it('forgets the nonces of a transaction SQLite rolled back, and keeps those committed before it', () => {
    const store = new NonceStore(db)
    useCommitted(store, signer, nonce(1), START)
    db.exec('BEGIN IMMEDIATE')
    store.use(signer, nonce(2), START + 1)
    db.exec('ROLLBACK')
    store.rolledBack()
    expect(store.size).toBe(1)
    useCommitted(store, signer, nonce(2), START + 2)
    expect(refusal(() => store.use(signer, nonce(1), START + 3))).toEqual({status: 401, code: 'replayed_nonce'})
    expect(logRows().map((row) => row.nonce)).toEqual([nonce(1), nonce(2)])
  })

  it('drops what retention has passed from memory and from the log, oldest first', () => {
    const store = new NonceStore(db)
    for (let n = 0; n < 5; n++) useCommitted(store, signer, nonce(n), START + n * 1000)
    store.forgetOlderThanRetention(START + 2000 + NONCE_RETENTION_MS)
    expect(store.size).toBe(3)
    expect(logRows().map((row) => row.nonce)).toEqual([nonce(2), nonce(3), nonce(4)])
    store.forgetOlderThanRetention(START + 10_000 + NONCE_RETENTION_MS)
    expect(store.size).toBe(0)
    expect(logRows()).toEqual([])
  })

  it('takes up the nonces of a database from before the log, oldest first', () => {
    db.exec(`
      DROP TABLE nonce_log;
      CREATE TABLE nonces (signer TEXT NOT NULL, nonce TEXT NOT NULL, seen_at INTEGER NOT NULL, PRIMARY KEY (signer, nonce));
      CREATE INDEX nonces_by_age ON nonces(seen_at);
      INSERT INTO nonces (signer, nonce, seen_at) VALUES ('${signer}', '${nonce(2)}', ${START + 5}), ('${other}', '${nonce(1)}', ${START});
    `)
    db.pragma(`user_version = ${SCHEMA_VERSION - 1}`)
    db.close()
    db = openDatabase(dataDir)
    expect(logRows()).toEqual([
      {seen_at: START, signer: other, nonce: nonce(1)},
      {seen_at: START + 5, signer, nonce: nonce(2)},
    ])
    const store = new NonceStore(db)
    expect(refusal(() => store.use(signer, nonce(2), START + 6))).toEqual({status: 401, code: 'replayed_nonce'})
  })
})
