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

  it('a noted line is in the file at once, for the next run of a killed agent to read, in order with the appended ones', () => {
    const path = join(dir, 'noted.jsonl')
    const journal = new Journal(path)
    const contract = contractFixture()
    journal.append({event: 'provision_started', contract_id: contract.contract_id, contract}, 1)
    journal.note({event: 'report_queued', entry_id: 'e1', kind: 'provisioning', contract_id: contract.contract_id, status: 'provisioned'}, 2)
    // Read while the journal is still open, as after SIGKILL: nothing waits in memory.
    expect(readJournal(path).entries.map((entry) => entry.event)).toEqual(['provision_started', 'report_queued'])
    journal.append({event: 'instance_ready', contract_id: contract.contract_id, external_id: 'x', adopted: false}, 3)
    journal.note({event: 'contract_done', contract_id: contract.contract_id, outcome: 'provisioned'}, 4)
    journal.close()
    expect(readJournal(path).entries.map((entry) => entry.at)).toEqual([1, 2, 3, 4])
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

  it('bills from the first time an instance was ready: a resumed run finding it again does not move that, a new instance after a terminated one does', () => {
    const path = join(dir, 'ready.jsonl')
    const journal = new Journal(path)
    const [found, retried] = [contractFixture(), contractFixture()]
    const ready = (id: string, at: number) => journal.append({event: 'instance_ready', contract_id: id, external_id: `outpost-${id}`, adopted: false}, at)
    ready(found.contract_id, 100)
    ready(found.contract_id, 500)
    ready(retried.contract_id, 100)
    journal.append({event: 'instance_terminated', contract_id: retried.contract_id, external_id: `outpost-${retried.contract_id}`, reason: 'refused'}, 200)
    ready(retried.contract_id, 300)
    journal.close()
    const state = journalState(readJournal(path).entries)
    expect(state.readyAt.get(found.contract_id)).toBe(100)
    expect(state.readyAt.get(retried.contract_id)).toBe(300)
    expect(state.terminatedAt.has(retried.contract_id)).toBe(false)
  })
})
