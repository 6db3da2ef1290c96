import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {Journal, journalPath, readJournal} from '../../src/agent/journal.js'
import {Outbox, type OutboxEntry} from '../../src/agent/outbox.js'
import {Reporter, type Confirmation, type Settlement} from '../../src/agent/reporter.js'
import {StateDisk} from '../../src/agent/state-disk.js'
import type {SignedUsageRecord} from '../../src/core/signing.js'
import {FakeMarketplace, RecordingLog, refusal, tempStateDir, unreachable, unreadable} from './fakes.js'

/** The reporter on fake timers against a fake marketplace, with a real outbox and journal in a temporary state dir. */

vi.mock('node:timers/promises', () => import('./fake-sleep.js'))

const A = 'aa'.repeat(16)
const B = 'bb'.repeat(16)
const C = 'cc'.repeat(16)

/** A usage record of one period (the reporter sends it as it is: its signature is the marketplace's to check). */
function usageRecord(contractId: string): SignedUsageRecord {
  return {record_id: `${contractId}-0`, contract_id: contractId, period_start: 0, period_end: 60_000, cpu_core_seconds: 60, memory_mb_seconds: 60, storage_gb_seconds: 60, gpu_seconds: 0, signer: 'dd'.repeat(32), signature: 'ee'.repeat(64)}
}

let state: ReturnType<typeof tempStateDir>
beforeEach(() => {
  vi.useFakeTimers()
  state = tempStateDir()
})
afterEach(() => {
  vi.useRealTimers()
  state.remove()
})

function harness(extra: {confirm?: () => Promise<Confirmation>; outbox?: Outbox; disk?: StateDisk} = {}) {
  const api = new FakeMarketplace()
  const journal = new Journal(journalPath(state.dir))
  const outbox = extra.outbox ?? new Outbox(state.dir)
  const depths: number[] = []
  const reporter = new Reporter({
    outbox,
    api,
    journal,
    log: new RecordingLog(),
    onApiError: () => undefined,
    onDepth: (depth) => depths.push(depth),
    ...(extra.confirm ? {confirm: extra.confirm} : {}),
    ...(extra.disk ? {disk: extra.disk} : {}),
  })
  const events = () => readJournal(journalPath(state.dir)).entries.map((entry) => ('kind' in entry ? `${entry.event} ${entry.kind}` : entry.event))
  return {api, outbox, reporter, depths, events, journal}
}

/** Moves the fake clock on until the settlement arrives (the reporter backs off between failed rounds). */
async function settled(promise: Promise<Settlement>): Promise<Settlement> {
  let result: Settlement | undefined
  void promise.then((settlement) => (result = settlement))
  for (let step = 0; step < 1000 && !result; step++) await vi.advanceTimersByTimeAsync(100)
  if (!result) throw new Error('the report was never settled')
  return result
}

describe('Reporter', () => {
  it('writes a report to the outbox before sending it, and removes it once the marketplace accepted it', async () => {
    const {api, outbox, reporter, depths, events} = harness()
    const release = api.hold('terminated')
    const settlement = reporter.send({kind: 'terminated', contract_id: A})
    await vi.advanceTimersByTimeAsync(0)
    expect(api.calls).toEqual([`terminated ${A}`])
    expect(outbox.depth()).toBe(1)
    expect(reporter.hasPending(A)).toBe(true)
    release()
    expect(await settled(settlement)).toEqual({delivered: true})
    expect(outbox.depth()).toBe(0)
    expect(reporter.hasPending(A)).toBe(false)
    expect(depths.at(-1)).toBe(0)
    expect(events()).toEqual(['report_queued terminated', 'report_delivered terminated'])
  })

  it('keeps a report the marketplace did not take (no answer, 5xx, 429, 401, 403) and sends it again until it does', async () => {
    const {api, outbox, reporter} = harness()
    api.failNext('terminated', unreachable(), refusal(503, 'unavailable'), refusal(429, 'rate_limited'), refusal(401, 'bad_signature'), refusal(403, 'forbidden'))
    const settlement = reporter.send({kind: 'terminated', contract_id: A})
    await vi.advanceTimersByTimeAsync(0)
    expect(outbox.depth()).toBe(1)
    expect(await settled(settlement)).toEqual({delivered: true})
    expect(api.callsOf('terminated')).toHaveLength(6)
    expect(outbox.depth()).toBe(0)
  })

  it('drops a report refused for good (a 4xx retrying cannot change) and says why', async () => {
    const {api, outbox, reporter, events} = harness()
    api.failNext('terminated', refusal(409, 'invalid_state'))
    const settlement = await settled(reporter.send({kind: 'terminated', contract_id: A}))
    expect(settlement).toMatchObject({delivered: false, status: 409})
    expect(settlement.delivered === false && settlement.reason).toContain('invalid_state')
    expect(api.callsOf('terminated')).toHaveLength(1)
    expect(outbox.depth()).toBe(0)
    expect(events()).toEqual(['report_queued terminated', 'report_rejected terminated'])
  })

  it('never takes an answer it could not read for a refusal: it keeps the report until the state or an answer settles it', async () => {
    const confirmations: Confirmation[] = ['unknown', 'not_in_effect', 'took_effect']
    const {api, outbox, reporter, events} = harness({confirm: async () => confirmations.shift() ?? 'unknown'})
    // Cut-off 2xx answers all along: only the marketplace's state can tell.
    api.failNext('terminated', ...Array.from({length: 10}, () => unreadable()))
    const settlement = await settled(reporter.send({kind: 'terminated', contract_id: A}))
    expect(settlement).toEqual({delivered: true})
    expect(api.callsOf('terminated')).toHaveLength(3)
    expect(outbox.depth()).toBe(0)
    expect(events()).toEqual(['report_queued terminated', 'report_delivered terminated'])
    expect(readJournal(journalPath(state.dir)).entries.at(-1)).toMatchObject({confirmed_by: 'state'})
  })

  it('settles a refused repeat as delivered when the state shows the first attempt took effect, and keeps it while the state cannot be read', async () => {
    const confirmations: Confirmation[] = ['unknown', 'took_effect']
    const {api, reporter} = harness({confirm: async () => confirmations.shift() ?? 'unknown'})
    api.failNext('terminated', refusal(409, 'invalid_transition'), refusal(409, 'invalid_transition'))
    expect(await settled(reporter.send({kind: 'terminated', contract_id: A}))).toEqual({delivered: true})
    expect(api.callsOf('terminated')).toHaveLength(2)
  })

  it('on a full disk sends the report all the same, and writes it once there is room while it is still unsent', async () => {
    let full = true
    class FullOutbox extends Outbox {
      override write(entry: OutboxEntry): void {
        if (full) throw Object.assign(new Error('ENOSPC: no space left on device'), {code: 'ENOSPC'})
        super.write(entry)
      }
    }
    const disk = new StateDisk({dir: state.dir, log: new RecordingLog()})
    const outbox = new FullOutbox(state.dir)
    const {api, reporter} = harness({outbox, disk})
    const release = api.hold('terminated')
    const settlement = reporter.send({kind: 'terminated', contract_id: A})
    expect(disk.full).toBe(true)
    expect(reporter.waitingForDisk).toBe(1)
    await vi.advanceTimersByTimeAsync(0)
    expect(api.calls).toEqual([`terminated ${A}`])
    expect(outbox.depth()).toBe(0)
    full = false
    expect(disk.retry()).toBe(true)
    expect(outbox.depth()).toBe(1)
    expect(reporter.waitingForDisk).toBe(0)
    release()
    expect(await settled(settlement)).toEqual({delivered: true})
    expect(outbox.depth()).toBe(0)
  })

  it('releases the lock after an accepted provisioning report that asks for it, and not after a refused one', async () => {
    const {api, reporter} = harness()
    await settled(reporter.send({kind: 'provisioning', contract_id: A, status: 'provisioning_failed', error: 'no room', retry_possible: true, unlock: true}))
    api.failNext('provisioning:provisioning_failed', refusal(409, 'invalid_state'))
    await settled(reporter.send({kind: 'provisioning', contract_id: B, status: 'provisioning_failed', error: 'no room', retry_possible: true, unlock: true}))
    expect(api.callsOf('unlock')).toEqual([`unlock ${A}`])
    expect(api.provisioningReports).toEqual([{contractId: A, report: {status: 'provisioning_failed', error: 'no room', retry_possible: true}}])
  })

  it("sends one contract's reports in order, one at a time, while another contract's go beside them", async () => {
    const {api, outbox, reporter} = harness()
    outbox.add({kind: 'provisioning', contract_id: A, status: 'provisioning_failed', error: 'x', unlock: false})
    outbox.add({kind: 'terminated', contract_id: B})
    outbox.add({kind: 'terminated', contract_id: A})
    const release = api.hold('provisioning:provisioning_failed')
    reporter.replay()
    await vi.advanceTimersByTimeAsync(0)
    expect(api.calls).toEqual([`provisioning:provisioning_failed ${A}`, `terminated ${B}`])
    release()
    expect(await reporter.flush(new AbortController().signal)).toBe(true)
    expect(api.calls).toEqual([`provisioning:provisioning_failed ${A}`, `terminated ${B}`, `terminated ${A}`])
  })

  it('sends usage reports that wait together in one request, and crosses each off once it is accepted', async () => {
    const {api, outbox, reporter, events} = harness()
    for (const contractId of [A, B, C]) outbox.add({kind: 'usage', records: [usageRecord(contractId)]})
    outbox.add({kind: 'terminated', contract_id: A})
    reporter.replay()
    expect(await reporter.flush(new AbortController().signal)).toBe(true)
    expect(api.calls).toEqual([`usage ${A}`, `terminated ${A}`])
    expect(api.usageRecords.map((record) => record.contract_id)).toEqual([A, B, C])
    expect(outbox.depth()).toBe(0)
    expect(events().filter((event) => event === 'report_delivered usage')).toHaveLength(3)
  })

  it('keeps usage reports sent together while their answer is unknown, and sends them together again', async () => {
    const {api, outbox, reporter} = harness()
    api.failNext('usage', unreadable(), refusal(503, 'unavailable'))
    for (const contractId of [A, B]) outbox.add({kind: 'usage', records: [usageRecord(contractId)]})
    reporter.replay()
    await vi.advanceTimersByTimeAsync(0)
    expect(outbox.depth()).toBe(2)
    const flushed = reporter.flush(new AbortController().signal)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(await flushed).toBe(true)
    expect(api.callsOf('usage')).toEqual([`usage ${A}`, `usage ${A}`, `usage ${A}`])
    expect(api.usageRecords.map((record) => record.contract_id)).toEqual([A, B])
    expect(outbox.depth()).toBe(0)
  })

  it('sends usage reports refused together one by one: a refused one is dropped, the others are accepted', async () => {
    const {api, outbox, reporter, events} = harness()
    // Together, then A alone: both refused (A's record is the bad one); B alone is accepted.
    api.failNext('usage', refusal(422, 'invalid_body'), refusal(422, 'invalid_body'))
    for (const contractId of [A, B]) outbox.add({kind: 'usage', records: [usageRecord(contractId)]})
    reporter.replay()
    expect(await reporter.flush(new AbortController().signal)).toBe(true)
    expect(api.callsOf('usage')).toEqual([`usage ${A}`, `usage ${A}`, `usage ${B}`])
    expect(api.usageRecords.map((record) => record.contract_id)).toEqual([B])
    expect(outbox.depth()).toBe(0)
    expect(events()).toEqual(['report_rejected usage', 'report_delivered usage'])
  })

  it('leaves what it could not send in the outbox on close(), and the next run replays it, oldest first', async () => {
    const first = harness()
    first.api.failNext('terminated', unreachable())
    void first.reporter.send({kind: 'terminated', contract_id: A})
    void first.reporter.send({kind: 'terminated', contract_id: B})
    await vi.advanceTimersByTimeAsync(0)
    first.reporter.close()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(first.outbox.depth()).toBe(2)
    first.journal.close()

    const next = harness()
    expect(next.reporter.replay()).toBe(2)
    expect(await next.reporter.flush(new AbortController().signal)).toBe(true)
    expect(next.api.calls).toEqual([`terminated ${A}`, `terminated ${B}`])
    expect(next.outbox.depth()).toBe(0)
  })

  it('flush() returns false when its signal fires before the outbox is empty, true once it is', async () => {
    const {api, reporter} = harness()
    const release = api.hold('terminated')
    void reporter.send({kind: 'terminated', contract_id: A})
    const stop = new AbortController()
    const flushed = reporter.flush(stop.signal)
    await vi.advanceTimersByTimeAsync(0)
    stop.abort()
    expect(await flushed).toBe(false)
    release()
    expect(await reporter.flush(new AbortController().signal)).toBe(true)
  })
})
