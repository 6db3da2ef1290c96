import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {Agent, type AgentSettings} from '../../src/agent/agent.js'
import {createMetrics} from '../../src/agent/metrics.js'
import type {Contract} from '../../src/core/api/schemas.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {LocalProvisioner} from '../../src/provisioners/local/local-provisioner.js'
import type {ProvisionedInstance} from '../../src/provisioners/provisioner.js'
import {contract, FakeMarketplace, OFFERINGS, RecordingLog, tempStateDir} from './fakes.js'

/**
 * The agent against a marketplace that names the wrong instance (PROTOCOL §6 `instance.external_id` is the marketplace's
 * word): it terminates, checks and bills only what the backend holds for each contract. The backend is a real local
 * one, so a wrong termination kills a real process.
 */

const SETTINGS: AgentSettings = {
  heartbeatSeconds: 20,
  longPollWaitSeconds: 0,
  pollIntervalSeconds: 5,
  healthCheckIntervalSeconds: 60,
  usageIntervalSeconds: 60,
  reconcileIntervalSeconds: 600,
  activeSyncSeconds: 15,
  maxConcurrentProvisions: 2,
  lockTtlSeconds: 90,
  siblingDeadAfterSeconds: 0,
}

let state: ReturnType<typeof tempStateDir>
let backend: LocalProvisioner
const made: ProvisionedInstance[] = []

beforeEach(() => {
  state = tempStateDir()
  backend = new LocalProvisioner({stateDir: state.dir})
})
afterEach(async () => {
  for (const instance of made.splice(0)) await backend.terminate(instance)
  state.remove()
})

async function running(contract: Contract): Promise<ProvisionedInstance> {
  const instance = await backend.provision(contract, AbortSignal.timeout(15_000))
  made.push(instance)
  return instance
}

/** The contract as the marketplace lists it among the active ones, naming `externalId` as its instance. */
function listed(base: Contract, externalId: string | undefined, overrides: Partial<Contract> = {}): Contract {
  return {...base, status: 'active', ...(externalId ? {instance: {external_id: externalId, ip_address: '127.0.0.1', ssh_port: 22}} : {instance: null}), ...overrides}
}

async function oneRound(api: FakeMarketplace, log: RecordingLog) {
  const agent = new Agent({api, key: generateKeyPair(), provisioner: backend, stateDir: state.dir, log, metrics: createMetrics({bidding: false}), settings: SETTINGS, version: 'test', pruneOrphans: false, offerings: OFFERINGS})
  try {
    return await agent.runOnce()
  } finally {
    await agent.stop(1000)
  }
}

describe("Agent: the marketplace's instance ids are checked against the backend's", () => {
  it("never terminates, checks or bills another contract's instance that the marketplace names", {timeout: 60_000}, async () => {
    const hour = 3_600_000
    const [c, d, e] = [contract({created_at: Date.now() - hour}), contract({created_at: Date.now() - hour}), contract({created_at: Date.now() - hour})]
    const ofC = await running(c)
    const ofD = await running(d)
    await running(e)
    const api = new FakeMarketplace()
    api.active = [
      // Cancelled, and named with D's instance: terminating it would kill D's machine.
      listed(c, ofD.externalId, {status: 'cancelled', termination_pending: true}),
      listed(d, ofD.externalId),
      // Running, and named with D's instance: its health and usage would be D's.
      listed(e, ofD.externalId),
    ]
    const log = new RecordingLog()
    expect(await oneRound(api, log)).toMatchObject({terminated: 0})

    expect((await backend.health(ofD)).status).toBe('healthy')
    expect((await backend.health(ofC)).status).toBe('healthy')
    expect(api.callsOf('terminated')).toEqual([])
    const refusals = log.lines.filter((line) => line.message.startsWith('refused:'))
    expect(refusals.map((line) => [line.level, line.details.contract_id])).toEqual([
      ['error', c.contract_id],
      ['error', e.contract_id],
    ])
    expect(refusals[0]?.details).toMatchObject({claimed_external_id: ofD.externalId, backend_external_ids: [ofC.externalId]})

    expect(api.healthChecks.find((check) => check.contract_id === d.contract_id)?.status).toBe('healthy')
    expect(api.healthChecks.find((check) => check.contract_id === e.contract_id)?.status).toBe('unknown')
    const billed = new Set(api.usageRecords.map((record) => record.contract_id))
    expect(billed.has(d.contract_id)).toBe(true)
    expect(billed.has(e.contract_id)).toBe(false)
  })

  it('reports a contract cancelled before it was provisioned terminated at once: it has no instance', {timeout: 60_000}, async () => {
    const never = contract()
    const other = await running(contract())
    const api = new FakeMarketplace()
    api.active = [listed(never, undefined, {status: 'cancelled', termination_pending: true})]
    expect(await oneRound(api, new RecordingLog())).toMatchObject({terminated: 1})
    expect(api.callsOf('terminated')).toEqual([`terminated ${never.contract_id}`])
    expect((await backend.health(other)).status).toBe('healthy')
  })
})
