import {appendFileSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {Journal, journalState, readJournal} from '../../src/agent/journal.js'
import {contractFixture} from '../provisioners/contract-suite.js'

const dir = mkdtempSync(join(tmpdir(), 'outpost-journal-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

describe('Journal', () => {
  it('appends entries that a restart reads back, and survives a line torn by a crash', () => {
    const path = join(dir, 'torn.jsonl')
    const journal = new Journal(path)
    const contract = contractFixture()
    journal.append({event: 'provision_started', contract_id: contract.contract_id, contract}, 1)
    journal.close()
    appendFileSync(path, '{"event":"instance_ready","contr')
    const reopened = new Journal(path)
    reopened.append({event: 'contract_done', contract_id: contract.contract_id, outcome: 'skipped'}, 3)
    reopened.close()
    const {entries, skipped} = readJournal(path)
    expect(skipped).toBe(1)
    expect(entries.map((entry) => entry.event)).toEqual(['provision_started', 'contract_done'])
  })

  it('tells a restarted agent what it left unfinished, when instances became ready and what usage it queued', () => {
    const [a, b, c] = [contractFixture(), contractFixture(), contractFixture()]
    const path = join(dir, 'state.jsonl')
    const journal = new Journal(path)
    for (const contract of [a, b, c]) journal.append({event: 'provision_started', contract_id: contract.contract_id, contract}, 10)
    journal.append({event: 'instance_ready', contract_id: a.contract_id, external_id: `outpost-${a.contract_id}`, adopted: false}, 20)
    journal.append({event: 'contract_done', contract_id: a.contract_id, outcome: 'provisioned'}, 30)
    journal.append({event: 'instance_terminated', contract_id: c.contract_id, external_id: `outpost-${c.contract_id}`, reason: 'cancelled'}, 40)
    journal.append({event: 'usage_queued', periods: {[a.contract_id]: 600}}, 50)
    journal.append({event: 'usage_queued', periods: {[a.contract_id]: 300}}, 60)
    journal.close()
    const state = journalState(readJournal(path).entries)
    expect(state.unfinished.map((contract) => contract.contract_id)).toEqual([b.contract_id])
    expect(state.readyAt.get(a.contract_id)).toBe(20)
    expect(state.usageReportedUntil.get(a.contract_id)).toBe(600)
    expect(state.terminatedAt.get(c.contract_id)).toBe(40)
  })
})
