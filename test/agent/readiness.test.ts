import {describe, expect, it} from 'vitest'

import {judgeReadiness, STALE_AFTER_INTERVALS, type ReadinessFacts} from '../../src/agent/readiness.js'

const NOW = 1_800_000_000_000
const working: ReadinessFacts = {
  now: NOW,
  resumed: true,
  lastAcknowledgedAt: NOW - 5000,
  heartbeatIntervalMs: 10_000,
  unreachable: undefined,
  refusal: undefined,
  draining: false,
  diskFull: false,
}
const codes = (facts: Partial<ReadinessFacts>) => judgeReadiness({...working, ...facts}).reasons.map((reason) => reason.code)

describe('readiness: the agent can do its job now', () => {
  it('is ready when it resumed, the marketplace answers and acknowledged a heartbeat lately', () => {
    expect(judgeReadiness(working)).toEqual({ready: true, reasons: []})
  })

  it('is not ready before the first acknowledged heartbeat, or before the previous run was taken up', () => {
    expect(codes({lastAcknowledgedAt: undefined})).toEqual(['starting'])
    expect(codes({resumed: false})).toEqual(['starting'])
  })

  it(`is not ready once the last acknowledged heartbeat is older than ${STALE_AFTER_INTERVALS} intervals, and at once while requests get no answer`, () => {
    expect(codes({lastAcknowledgedAt: NOW - STALE_AFTER_INTERVALS * 10_000})).toEqual([])
    expect(codes({lastAcknowledgedAt: NOW - STALE_AFTER_INTERVALS * 10_000 - 1})).toEqual(['heartbeat_stale'])
    expect(codes({unreachable: {since: NOW - 2000, message: 'connection refused'}})).toEqual(['marketplace_unreachable'])
  })

  it('is not ready while the key is refused, while draining, or while the state disk is full, and says each reason', () => {
    const verdict = judgeReadiness({...working, refusal: {code: 'delegation_expired', message: 'the delegation expired'}, draining: true, diskFull: true})
    expect(verdict.ready).toBe(false)
    expect(verdict.reasons.map((reason) => reason.code)).toEqual(['key_refused', 'draining', 'state_disk_full'])
    expect(verdict.reasons[0]?.message).toContain('delegation_expired')
  })
})
