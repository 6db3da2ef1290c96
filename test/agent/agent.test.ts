import {readFileSync} from 'node:fs'
import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {Agent, type AgentSettings} from '../../src/agent/agent.js'
import {Journal, journalPath, readJournal} from '../../src/agent/journal.js'
import {createMetrics} from '../../src/agent/metrics.js'
import type {Contract} from '../../src/core/api/schemas.js'
import {openSealedCredentials} from '../../src/core/sealing.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {ProvisionError} from '../../src/provisioners/provisioner.js'
import {contract, FakeMarketplace, FakeProvisioner, RecordingLog, refusal, renterKey, tempStateDir, unreachable, unreadable} from './fakes.js'

/**
 * The agent's provisioning steps, one round (`runOnce`) at a time, against a fake marketplace and a fake backend. The
 * loops against a real devnet and real workloads are tested end to end (test/e2e/agent*.test.ts).
 */

vi.mock('node:timers/promises', () => import('./fake-sleep.js'))

const SETTINGS: AgentSettings = {
  heartbeatSeconds: 20,
  longPollWaitSeconds: 0,
  pollIntervalSeconds: 5,
  healthCheckIntervalSeconds: 60,
  usageIntervalSeconds: 300,
  reconcileIntervalSeconds: 600,
  activeSyncSeconds: 15,
  maxConcurrentProvisions: 2,
  lockTtlSeconds: 90,
  siblingDeadAfterSeconds: 0,
}

let state: ReturnType<typeof tempStateDir>
beforeEach(() => {
  state = tempStateDir()
})
afterEach(() => state.remove())

function newAgent(api: FakeMarketplace, provisioner: FakeProvisioner, log = new RecordingLog()): Agent {
  return new Agent({
    api,
    key: generateKeyPair(),
    provisioner,
    stateDir: state.dir,
    log,
    metrics: createMetrics({bidding: false}),
    settings: SETTINGS,
    version: 'test',
    pruneOrphans: false,
  })
}

/** One round, then a stop, as `outpost run --once` does. */
async function oneRound(agent: Agent) {
  try {
    return await agent.runOnce()
  } finally {
    await agent.stop(1000)
  }
}

function journalEventsOf(contractId: string): string[] {
  return readJournal(journalPath(state.dir))
    .entries.filter((entry) => 'contract_id' in entry && entry.contract_id === contractId)
    .map((entry) => (entry.event === 'contract_done' ? `${entry.event} ${entry.outcome}` : entry.event))
}

function callsFor(api: FakeMarketplace, id: string): string[] {
  return api.calls.filter((call) => call.endsWith(` ${id}`)).map((call) => call.split(' ')[0] ?? '')
}

describe('Agent: provisioning a contract', () => {
  it('journals first, locks, reports provisioning, creates the instance, hands it over sealed, then unlocks', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const log = new RecordingLog()
    const accepted = contract()
    api.pending = [accepted]
    const agent = newAgent(api, provisioner, log)
    const result = await oneRound(agent)

    expect(result).toMatchObject({provisioned: 1, failed: 0, skipped: 0, outboxLeft: 0})
    expect(callsFor(api, accepted.contract_id)).toEqual(['lock', 'provisioning:provisioning', 'provisioning:provisioned', 'unlock'])
    expect(provisioner.calls).toEqual([`find ${accepted.contract_id}`, `provision ${accepted.contract_id}`])
    expect(journalEventsOf(accepted.contract_id)).toEqual(['provision_started', 'instance_ready', 'report_queued', 'report_delivered', 'contract_done provisioned'])
    const handedOver = api.provisioningReports.find((report) => report.report.status === 'provisioned')?.report.instance
    expect(handedOver?.details?.agent_id).toBe(agent.agentId)
    expect(openSealedCredentials(handedOver?.sealed_credentials ?? '', renterKey.seed)).toEqual({password: 'instance-password-test'})
    // The password reaches the renter sealed, and nowhere else.
    expect(JSON.stringify(log.lines)).not.toContain('instance-password-test')
    expect(readFileSync(journalPath(state.dir), 'utf8')).not.toContain('instance-password-test')
  })

  it('skips a contract whose lock another agent holds: nothing is made or reported', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const taken = contract()
    api.pending = [taken]
    api.failNext('lock', refusal(409, 'locked'))
    expect(await oneRound(newAgent(api, provisioner))).toMatchObject({provisioned: 0, skipped: 1})
    expect(callsFor(api, taken.contract_id)).toEqual(['lock'])
    expect(provisioner.calls).toEqual([])
    expect(journalEventsOf(taken.contract_id)).toEqual(['provision_started', 'contract_done skipped'])
  })

  it('skips a contract the marketplace no longer lets it provision, and releases the lock', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const cancelled = contract()
    api.pending = [cancelled]
    api.failNext('provisioning:provisioning', refusal(409, 'invalid_state'))
    expect(await oneRound(newAgent(api, provisioner))).toMatchObject({provisioned: 0, skipped: 1})
    expect(callsFor(api, cancelled.contract_id)).toEqual(['lock', 'provisioning:provisioning', 'unlock'])
    expect(provisioner.calls).toEqual([])
  })

  it('keeps a contract it could not lock (no answer) unfinished in the journal, and the next run provisions it', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const accepted = contract()
    api.pending = [accepted]
    api.failNext('lock', unreachable())
    expect(await oneRound(newAgent(api, provisioner))).toMatchObject({provisioned: 0, skipped: 0, failed: 0})
    expect(provisioner.calls).toEqual([])
    expect(journalEventsOf(accepted.contract_id)).toEqual(['provision_started'])

    api.pending = []
    expect(await oneRound(newAgent(api, provisioner))).toMatchObject({provisioned: 1})
    expect(provisioner.calls).toEqual([`find ${accepted.contract_id}`, `provision ${accepted.contract_id}`])
  })

  it('after a crash, finds the instance the previous run made and hands it over instead of making a second', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const started = contract()
    const journal = new Journal(journalPath(state.dir))
    journal.append({event: 'provision_started', contract_id: started.contract_id, contract: started})
    journal.close()
    provisioner.make(started.contract_id)
    expect(await oneRound(newAgent(api, provisioner))).toMatchObject({provisioned: 1})
    expect(provisioner.calls).toEqual([`find ${started.contract_id}`])
    const ready = readJournal(journalPath(state.dir)).entries.find((entry) => entry.event === 'instance_ready')
    expect(ready).toMatchObject({adopted: true, external_id: `fake-${started.contract_id}`})
  })

  it('reports a backend failure as provisioning_failed, saying whether a retry may help', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const accepted = contract()
    api.pending = [accepted]
    provisioner.provisionFailures.push(new ProvisionError('the template is missing', {retryPossible: false}))
    expect(await oneRound(newAgent(api, provisioner))).toMatchObject({provisioned: 0, failed: 1})
    const failure = api.provisioningReports.find((report) => report.report.status === 'provisioning_failed')
    expect(failure?.report).toMatchObject({retry_possible: false})
    expect(failure?.report.error).toContain('the template is missing')
    expect(callsFor(api, accepted.contract_id)).toEqual(['lock', 'provisioning:provisioning', 'provisioning:provisioning_failed', 'unlock'])
  })

  it('reports no failure when the backend stopped for a full disk on this host: the contract waits until there is room', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const log = new RecordingLog()
    const accepted = contract()
    api.pending = [accepted]
    const full = Object.assign(new Error('ENOSPC: no space left on device, open'), {code: 'ENOSPC'})
    provisioner.provisionFailures.push(new ProvisionError('outpost-x: no space', {retryPossible: true, cause: full}))
    const agent = newAgent(api, provisioner, log)
    expect(await agent.runOnce()).toMatchObject({provisioned: 0, failed: 0, interrupted: 1})
    expect(agent.disk.full).toBe(true)
    await agent.stop(1000)
    expect(api.provisioningReports.map((report) => report.report.status)).toEqual(['provisioning'])
    expect(log.lines.filter((line) => line.message.startsWith('the state disk is full'))).toHaveLength(1)
    expect(journalEventsOf(accepted.contract_id)).not.toContain('contract_done failed')
  })

  it('terminates the instance when the contract was cancelled before its provisioned report, and reports it terminated', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const accepted = contract()
    api.pending = [accepted]
    // Cancelled while it was being provisioned: on the active list, termination pending, with no instance.
    api.active = [{...accepted, status: 'cancelled', termination_pending: true}]
    api.failNext('provisioning:provisioned', refusal(409, 'invalid_transition'))
    expect(await oneRound(newAgent(api, provisioner))).toMatchObject({provisioned: 0, failed: 1})
    expect(provisioner.calls.slice(0, 3)).toEqual([`find ${accepted.contract_id}`, `provision ${accepted.contract_id}`, `terminate fake-${accepted.contract_id}`])
    expect(provisioner.instances.size).toBe(0)
    expect(callsFor(api, accepted.contract_id)).toContain('terminated')
  })

  it('keeps the instance when the provisioned report took effect and only its answer was lost (a repeat is refused)', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const log = new RecordingLog()
    const accepted = contract()
    api.pending = [accepted]
    // The first answer is cut off; the report had taken effect and the contract became active, so the repeat is refused.
    api.failNext('provisioning:provisioned', unreadable(), refusal(409, 'invalid_transition'))
    const instance = {external_id: `fake-${accepted.contract_id}`, ip_address: '127.0.0.1', ssh_port: 2222}
    api.active = [{...accepted, status: 'active', instance}]
    const agent = newAgent(api, provisioner, log)
    expect(await oneRound(agent)).toMatchObject({provisioned: 1, failed: 0, outboxLeft: 0})
    expect(provisioner.calls).not.toContain(`terminate fake-${accepted.contract_id}`)
    expect(provisioner.instances.size).toBe(1)
    expect(callsFor(api, accepted.contract_id)).not.toContain('terminated')
    const delivered = readJournal(journalPath(state.dir)).entries.find((entry) => entry.event === 'report_delivered' && entry.kind === 'provisioning')
    expect(delivered).toMatchObject({status: 'provisioned', confirmed_by: 'state'})
  })

  it('never terminates while the refusal cannot be checked against the marketplace state: the instance waits for the next run', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const accepted = contract()
    api.pending = [accepted]
    api.failNext('provisioning:provisioned', ...Array.from({length: 50}, () => refusal(409, 'invalid_transition')))
    // Every read of the state fails.
    api.failNext('active', ...Array.from({length: 50}, () => unreachable()))
    const agent = newAgent(api, provisioner)
    const round = agent.runOnce().catch(() => undefined)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const {outboxLeft} = await agent.stop(100)
    await round
    expect(outboxLeft).toBe(1)
    expect(provisioner.calls).not.toContain(`terminate fake-${accepted.contract_id}`)
    expect(provisioner.instances.size).toBe(1)
    expect(journalEventsOf(accepted.contract_id)).not.toContain('contract_done failed')
  })

  it('terminates the instance of a contract that ended, bills its last period up to the termination, and reports it once', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const readyAt = Date.now() - 5000
    const ended: Contract = {...contract({created_at: readyAt - 1000}), status: 'cancelled', termination_pending: true}
    const instance = provisioner.make(ended.contract_id)
    api.active = [{...ended, instance: {external_id: instance.externalId, ip_address: instance.ipAddress, ssh_port: instance.sshPort, details: {ready_at: readyAt}}}]
    const before = Date.now()
    expect(await oneRound(newAgent(api, provisioner))).toMatchObject({terminated: 1})
    expect(provisioner.calls).toEqual([`terminate ${instance.externalId}`])
    expect(callsFor(api, ended.contract_id)).toEqual(['usage', 'terminated'])
    // SETTINGS bill every 300 s: the 5 s it ran fall in at most two periods, the last one cut at the termination.
    const billed = api.usageRecords.reduce((sum, record) => sum + (record.period_end - record.period_start), 0)
    expect(api.usageRecords[0]?.period_start).toBe(readyAt)
    expect(api.usageRecords.at(-1)?.period_end).toBeGreaterThanOrEqual(before)
    expect(billed).toBeGreaterThanOrEqual(before - readyAt)
  })
})

describe('Agent: a dead sibling agent', () => {
  const SIBLING = 'bb'.repeat(16)

  /** A contract the sibling provisioned 20 minutes ago, as the active list shows it. */
  function siblings(provisioner: FakeProvisioner, overrides: Partial<Contract> = {}): Contract {
    const base = contract({created_at: Date.now() - 21 * 60_000, status: 'active', ...overrides})
    const made = provisioner.make(base.contract_id)
    return {...base, instance: {external_id: made.externalId, ip_address: '127.0.0.1', ssh_port: 2222, details: {agent_id: SIBLING, ready_at: Date.now() - 20 * 60_000}}}
  }

  it.each([
    {state: 'dead', ageMs: 31_000, lookedAfter: true},
    {state: 'alive', ageMs: 29_000, lookedAfter: false},
  ])('a $state sibling (last heartbeat $ageMs ms ago, dead after 3 × 10 s): its contracts looked after here: $lookedAfter', async ({ageMs, lookedAfter}) => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const log = new RecordingLog()
    api.heartbeatAnswer = {acknowledged: true, next_heartbeat_seconds: 10, agents: [{agent_id: SIBLING, last_heartbeat_age_ms: ageMs}]}
    const running = siblings(provisioner)
    const cancelled = siblings(provisioner, {status: 'cancelled', termination_pending: true})
    api.active = [running, cancelled]
    const result = await oneRound(newAgent(api, provisioner, log))

    expect(api.heartbeats[0]?.agent_id).toMatch(/^[0-9a-f]{32}$/)
    expect(api.healthChecks.map((check) => check.contract_id)).toEqual(lookedAfter ? [running.contract_id] : [])
    const billed = new Set(api.usageRecords.map((record) => record.contract_id))
    expect(billed).toEqual(new Set(lookedAfter ? [running.contract_id, cancelled.contract_id] : []))
    expect(provisioner.calls).toEqual(lookedAfter ? [`terminate ${cancelled.instance?.external_id}`] : [])
    expect(result.terminated).toBe(lookedAfter ? 1 : 0)
    // Billed from when the sibling's instance was ready, not from when the contract was made.
    const first = api.usageRecords.filter((record) => record.contract_id === running.contract_id).sort((a, b) => a.period_start - b.period_start)[0]
    if (lookedAfter) expect(first?.period_start).toBe(running.instance?.details?.ready_at)
    expect(log.lines.filter((line) => line.message.startsWith('taking over a contract of a dead sibling'))).toHaveLength(lookedAfter ? 2 : 0)
  })
})

describe('Agent: the stake tier limit', () => {
  it('says once how many contracts wait on the tier and what more stake lifts it, and counts them in a gauge', async () => {
    const api = new FakeMarketplace()
    const log = new RecordingLog()
    const metrics = createMetrics({bidding: false})
    api.tierLimited = 3
    api.stakeInfo = {staked: '1000', tier: 'consumer', max_concurrent_contracts: 4, unbonding: [], rewards_pending: '0'}
    const agent = new Agent({api, key: generateKeyPair(), provisioner: new FakeProvisioner(), stateDir: state.dir, log, metrics, settings: SETTINGS, version: 'test', pruneOrphans: false})
    await agent.runOnce()
    await agent.runOnce()
    const lines = log.lines.filter((line) => line.message.includes('stake tier limit'))
    expect(lines).toHaveLength(1)
    expect(lines[0]?.level).toBe('warn')
    expect(lines[0]?.message).toBe('3 contracts wait on the stake tier limit: the tier allows 4 at once; staking 1500 more (tier workstation) allows 8')
    expect(lines[0]?.details).toMatchObject({waiting: 3, tier: 'consumer', next_tier: 'workstation', stake_needed: '1500'})
    expect((await metrics.tierLimitedContracts.get()).values[0]?.value).toBe(3)
    api.tierLimited = 0
    await agent.runOnce()
    await agent.stop(100)
    expect(log.lines.filter((line) => line.message.includes('stake tier limit'))).toHaveLength(2)
    expect((await metrics.tierLimitedContracts.get()).values[0]?.value).toBe(0)
  })
})

describe('Agent: usage after a restart', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  it('bills what accrued before it started at once, not one interval later', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const running = contract({created_at: Date.now() - 20 * 60_000, status: 'active'})
    const made = provisioner.make(running.contract_id)
    api.active = [{...running, instance: {external_id: made.externalId, ip_address: '127.0.0.1', ssh_port: 2222}}]
    const agent = newAgent(api, provisioner)
    await agent.start()
    // SETTINGS bill every 300 s: the 20 minutes before the start are due now.
    await vi.advanceTimersByTimeAsync(1000)
    expect(api.usageRecords.length).toBeGreaterThanOrEqual(3)
    expect(api.usageRecords.every((record) => record.contract_id === running.contract_id)).toBe(true)
    const stopped = agent.stop(0)
    await vi.advanceTimersByTimeAsync(0)
    await stopped
  })
})

describe('Agent: heartbeat interval', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  // [agent] heartbeat_seconds is 20 here: it holds when the answer names no interval PROTOCOL §5 allows (10–3600).
  it.each([
    {named: undefined, heartbeatsIn60s: 4},
    {named: 5, heartbeatsIn60s: 4},
    {named: 4000, heartbeatsIn60s: 4},
    {named: 30, heartbeatsIn60s: 3},
  ])('answer names $named: $heartbeatsIn60s heartbeats in 60 s', async ({named, heartbeatsIn60s}) => {
    const api = new FakeMarketplace()
    api.heartbeatAnswer = named === undefined ? {acknowledged: true} : {acknowledged: true, next_heartbeat_seconds: named}
    const agent = newAgent(api, new FakeProvisioner())
    await agent.start()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(api.heartbeats).toHaveLength(heartbeatsIn60s)
    expect(agent.readiness().ready).toBe(true)
    const stopped = agent.stop(0)
    await vi.advanceTimersByTimeAsync(0)
    await stopped
  })
})
