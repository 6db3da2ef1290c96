import {describe, expect, it} from 'vitest'

import {Siblings} from '../../src/agent/siblings.js'

const SELF = 'aa'.repeat(16)
const OTHER = 'bb'.repeat(16)
const UNLISTED = 'cc'.repeat(16)

describe('Siblings', () => {
  it('takes a sibling for dead once its last heartbeat is older than the bound, and for alive again when it heartbeats', () => {
    const siblings = new Siblings(SELF)
    expect(siblings.known).toBe(false)
    siblings.update([{agent_id: OTHER, last_heartbeat_age_ms: 5000}], 100_000)
    expect(siblings.known).toBe(true)
    // Its heartbeat was at 95 000 on this host's clock.
    expect(siblings.deadFor(OTHER, 30_000, 120_000)).toBeUndefined()
    expect(siblings.deadFor(OTHER, 30_000, 125_001)).toBe(30_001)
    siblings.update([{agent_id: OTHER, last_heartbeat_age_ms: 0}], 126_000)
    expect(siblings.deadFor(OTHER, 30_000, 130_000)).toBeUndefined()
  })

  it('never takes itself, or an agent the marketplace never listed, for dead', () => {
    const siblings = new Siblings(SELF)
    siblings.update([{agent_id: SELF, last_heartbeat_age_ms: 999_999}], 1_000_000)
    expect(siblings.deadFor(SELF, 1000, 2_000_000)).toBeUndefined()
    expect(siblings.deadFor(UNLISTED, 1000, 2_000_000)).toBeUndefined()
  })

  it('keeps what it knew when a marketplace answers without a list', () => {
    const siblings = new Siblings(SELF)
    siblings.update(undefined)
    expect(siblings.known).toBe(false)
    siblings.update([{agent_id: OTHER, last_heartbeat_age_ms: 0}], 0)
    siblings.update(undefined)
    expect(siblings.deadFor(OTHER, 10, 100)).toBe(100)
  })
})
