import {readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {readContractRecord} from '../../src/agent/contract-record.js'
import {Journal, journalPath} from '../../src/agent/journal.js'
import {Outbox} from '../../src/agent/outbox.js'
import {archiveUsageRecords} from '../../src/agent/usage-archive.js'
import {usageRecord} from '../../src/agent/usage.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {contract, tempStateDir} from './fakes.js'

/** The one read of an agent's state dir that other services (dispute evidence) use. */

let state: ReturnType<typeof tempStateDir>
beforeEach(() => {
  state = tempStateDir()
})
afterEach(() => state.remove())

describe('readContractRecord', () => {
  it("gathers one contract's journal entries and usage records (archive and outbox, once each), and changes nothing", () => {
    const key = generateKeyPair()
    const mine = contract()
    const other = contract()
    const [first, second] = [0, 1].map((index) => usageRecord(key, mine, {alignedStart: index * 60_000, start: index * 60_000, end: (index + 1) * 60_000}, 60_000))
    if (!first || !second) throw new Error('two records expected')
    const journal = new Journal(journalPath(state.dir))
    journal.append({event: 'provision_started', contract_id: mine.contract_id, contract: mine})
    journal.append({event: 'provision_started', contract_id: other.contract_id, contract: other})
    journal.close()
    archiveUsageRecords(state.dir, [first])
    const outbox = new Outbox(state.dir)
    outbox.add({kind: 'usage', records: [first, second]})
    // A running agent would move this aside on its next start; a reader must leave it where it is.
    writeFileSync(join(outbox.dir, '0000000000000001-000001.json'), '{"torn')
    const filesBefore = readdirSync(outbox.dir).sort()

    const record = readContractRecord(state.dir, mine.contract_id)
    expect(record.events.map((entry) => entry.event)).toEqual(['provision_started'])
    expect(record.usageRecords.map((usage) => usage.record_id)).toEqual([first.record_id, second.record_id])
    expect(record).toMatchObject({skippedJournalLines: 0, skippedUsageLines: 0})
    expect(readdirSync(outbox.dir).sort()).toEqual(filesBefore)
  })

  it('reads an empty or missing state dir as nothing', () => {
    expect(readContractRecord(join(state.dir, 'missing'), contract().contract_id)).toEqual({events: [], usageRecords: [], healthChecks: [], skippedJournalLines: 0, skippedUsageLines: 0, skippedHealthLines: 0})
  })
})
