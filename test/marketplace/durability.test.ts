import Database from 'better-sqlite3'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {Contract} from '../../src/core/api/schemas.js'
import {generateKeyPair, randomHex} from '../../src/core/signing.js'
import {DATABASE_FILE_NAME} from '../../src/marketplace/database.js'
import {errorOf, OFFERING, pub, send} from '../support/harness.js'
import {startDevnet} from '../support/devnet.js'

const dataDir = mkdtempSync(join(tmpdir(), 'outpost-durability-'))
afterAll(() => rmSync(dataDir, {recursive: true, force: true}))

describe('kill -9 between writes', () => {
  it('loses no committed write and leaves no half-written row', async () => {
    const first = await startDevnet({dataDir: dataDir, process: true})
    const main = generateKeyPair()
    const requester = generateKeyPair()
    expect((await send(first, 'POST', '/providers', {key: main, body: {name: 'durable', contact_email: 'd@example.net'}})).status).toBe(201)
    const offering = await send<{offering_id: string}>(first, 'POST', `/providers/${pub(main)}/offerings`, {key: main, body: OFFERING})
    const contractBody = {offering_id: offering.body.offering_id, ssh_pubkey: 'ssh-ed25519 AAAA', duration_hours: 1}

    // Committed: these answered 201 before the kill.
    const committed: string[] = []
    for (let index = 0; index < 20; index++) {
      committed.push((await send<{contract_id: string}>(first, 'POST', '/contracts', {key: requester, body: contractBody})).body.contract_id)
    }
    const lastNonce = randomHex(16)
    const lastTimestamp = Date.now()
    const stake = await send(first, 'POST', `/providers/${pub(main)}/stake`, {key: main, body: {amount: '1234.5'}, nonce: lastNonce, timestamp: lastTimestamp})
    expect(stake.status).toBe(200)

    // In flight at the kill: a burst of writes, some of which may have committed without an answer.
    const inFlight = Array.from({length: 50}, () => send(first, 'POST', '/contracts', {key: requester, body: contractBody}).catch(() => undefined))
    await new Promise((resolve) => setTimeout(resolve, 15))
    first.child.kill('SIGKILL')
    expect((await first.exited).signal).toBe('SIGKILL')
    const answeredBeforeKill = (await Promise.all(inFlight)).flatMap((answer) => (answer?.status === 201 ? [(answer.body as {contract_id: string}).contract_id] : []))

    const second = await startDevnet({dataDir: dataDir, process: true})
    try {
      for (const id of [...committed, ...answeredBeforeKill]) {
        const answer = await send(second, 'GET', `/contracts/${id}`, {key: requester})
        expect(answer.status, id).toBe(200)
        expect(Contract.parse(answer.body).status).toBe('accepted')
      }
      expect((await send(second, 'GET', `/providers/${pub(main)}/stake`)).body).toMatchObject({staked: '1234.5'})
      // The nonce store survived too: the last committed request can't be replayed.
      const replay = await send(second, 'POST', `/providers/${pub(main)}/stake`, {key: main, body: {amount: '1234.5'}, nonce: lastNonce, timestamp: lastTimestamp})
      expect(errorOf(replay)).toEqual({status: 401, code: 'replayed_nonce'})

      const db = new Database(join(dataDir, DATABASE_FILE_NAME), {readonly: true})
      expect(db.pragma('integrity_check', {simple: true})).toBe('ok')
      const rows = db.prepare('SELECT * FROM contracts').all() as Record<string, unknown>[]
      db.close()
      expect(rows.length).toBeGreaterThanOrEqual(committed.length + answeredBeforeKill.length)
      for (const row of rows) {
        const answer = await send(second, 'GET', `/contracts/${String(row.contract_id)}`, {key: requester})
        expect(Contract.parse(answer.body).contract_id).toBe(row.contract_id)
      }
    } finally {
      second.child.kill('SIGTERM')
      expect(await second.exited).toEqual({code: 0, signal: null})
    }
  })
})
