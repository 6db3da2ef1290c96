import {afterEach, beforeEach, describe, expect, it, vi} from 'vitest'

import {Agent, type AgentSettings} from '../../src/agent/agent.js'
import {journalPath, readJournal} from '../../src/agent/journal.js'
import {createMetrics} from '../../src/agent/metrics.js'
import type {Contract} from '../../src/core/api/schemas.js'
import {generateKeyPair} from '../../src/core/signing.js'
import type {GpuUnit} from '../../src/gpu/allocator.js'
import type {Capacity, ProvisionedInstance} from '../../src/provisioners/provisioner.js'
import {contract, FakeMarketplace, OFFERINGS, FakeProvisioner, RecordingLog, tempStateDir} from './fakes.js'

/** GPU contracts through the agent: devices allocated (journalled) before the instance, freed when it ends. */

vi.mock('node:timers/promises', () => import('./fake-sleep.js'))

const SETTINGS: AgentSettings = {
  heartbeatSeconds: 20,
  longPollWaitSeconds: 0,
  pollIntervalSeconds: 5,
  healthCheckIntervalSeconds: 60,
  usageIntervalSeconds: 300,
  reconcileIntervalSeconds: 600,
  activeSyncSeconds: 15,
  maxConcurrentProvisions: 1,
  lockTtlSeconds: 90,
  siblingDeadAfterSeconds: 0,
}

const UNITS: GpuUnit[] = [
  {id: 'GPU-0', model: 'h100'},
  {id: 'GPU-1', model: 'h100'},
]

/** A backend that hands out two GPUs, and remembers which ones each instance got. */
class GpuProvisioner extends FakeProvisioner {
  readonly given = new Map<string, string[]>()

  override async provision(accepted: Contract, signal?: AbortSignal, gpus?: readonly GpuUnit[]): Promise<ProvisionedInstance> {
    this.given.set(accepted.contract_id, (gpus ?? []).map((unit) => unit.id))
    return super.provision(accepted)
  }

  async gpuUnits(): Promise<GpuUnit[]> {
    return UNITS
  }

  override async capacity(): Promise<Capacity> {
    return {cpuCores: 32, memoryMb: 262_144, storageGb: 2000, gpuCount: 2, gpuModels: ['h100']}
  }
}

let state: ReturnType<typeof tempStateDir>
beforeEach(() => {
  state = tempStateDir()
})
afterEach(() => state.remove())

async function oneRound(api: FakeMarketplace, provisioner: FakeProvisioner) {
  const agent = new Agent({api, key: generateKeyPair(), provisioner, stateDir: state.dir, log: new RecordingLog(), metrics: createMetrics({bidding: false}), settings: SETTINGS, version: 'test', pruneOrphans: false, offerings: OFFERINGS})
  try {
    return await agent.runOnce()
  } finally {
    await agent.stop(1000)
  }
}

const gpuEvents = () =>
  readJournal(journalPath(state.dir))
    .entries.filter((entry) => entry.event === 'gpu_allocated' || entry.event === 'gpu_released' || entry.event === 'instance_ready')
    .map((entry) => (entry.event === 'gpu_allocated' ? `allocated ${entry.holder} ${entry.devices.join(',')}` : entry.event === 'gpu_released' ? `released ${entry.holder}` : 'instance_ready'))

describe('Agent: GPU contracts', () => {
  it('gives a contract its devices, journalled before the instance is made, and heartbeats what is free', async () => {
    const api = new FakeMarketplace()
    const provisioner = new GpuProvisioner()
    const first = contract({product_type: 'gpu', gpu_count: 1})
    api.pending = [first]
    expect(await oneRound(api, provisioner)).toMatchObject({provisioned: 1})
    expect(provisioner.given.get(first.contract_id)).toEqual(['GPU-0'])
    expect(gpuEvents()).toEqual([`allocated contract:${first.contract_id} GPU-0`, 'instance_ready'])
    expect(api.heartbeats[0]?.capacity).toEqual({cpu_cores: 32, memory_mb: 262_144, storage_gb: 2000, gpu_count: 2, gpu_models: ['h100']})

    // A restart keeps the allocation: the next heartbeat says one GPU is free, the next contract gets the other.
    const second = contract({product_type: 'gpu', gpu_count: 1})
    api.pending = [second]
    api.active = [{...first, status: 'active', instance: {external_id: `fake-${first.contract_id}`, ip_address: '127.0.0.1', ssh_port: 2222}}]
    expect(await oneRound(api, provisioner)).toMatchObject({provisioned: 1})
    expect(api.heartbeats[1]?.free).toMatchObject({gpu_count: 1, gpu_models: ['h100']})
    expect(provisioner.given.get(second.contract_id)).toEqual(['GPU-1'])
  })

  it('a GPU contract on a host with none free fails with the reason, retryable; one asking for more than the host has, for good', async () => {
    const api = new FakeMarketplace()
    const provisioner = new GpuProvisioner()
    api.pending = [contract({gpu_count: 2})]
    await oneRound(api, provisioner)
    const busy = contract({gpu_count: 1})
    const tooMany = contract({gpu_count: 3})
    api.pending = [busy, tooMany]
    expect(await oneRound(api, provisioner)).toMatchObject({provisioned: 0, failed: 2})
    const report = (id: string) => api.provisioningReports.find((item) => item.contractId === id && item.report.status === 'provisioning_failed')?.report
    // The renter reads a category; which contracts hold the devices stays in this host's journal and log.
    expect(report(busy.contract_id)).toMatchObject({retry_possible: true, error: 'gpu_unavailable: the GPUs this contract asks for are not available'})
    expect(report(tooMany.contract_id)).toMatchObject({retry_possible: false, error: 'gpu_unavailable: the GPUs this contract asks for are not available'})
    const reasons = new Map(readJournal(journalPath(state.dir)).entries.flatMap((entry) => (entry.event === 'contract_done' ? [[entry.contract_id, entry.reason]] : [])))
    expect(reasons.get(busy.contract_id)).toMatch(/^1 GPU asked for: 0 of 2 free, the others held by contract:/)
    expect(reasons.get(tooMany.contract_id)).toBe('3 GPUs asked for: this host has 2 (2 × h100)')
    expect(provisioner.calls.filter((call) => call.startsWith('provision'))).toHaveLength(1)
  })

  it('frees the devices when the contract ends, and when provisioning fails', async () => {
    const api = new FakeMarketplace()
    const provisioner = new GpuProvisioner()
    const held = contract({gpu_count: 2})
    api.pending = [held]
    await oneRound(api, provisioner)
    api.pending = []
    api.active = [{...held, status: 'cancelled', termination_pending: true, instance: {external_id: `fake-${held.contract_id}`, ip_address: '127.0.0.1', ssh_port: 2222}}]
    expect(await oneRound(api, provisioner)).toMatchObject({terminated: 1})
    expect(gpuEvents().at(-1)).toBe(`released contract:${held.contract_id}`)

    api.active = []
    const failing = contract({gpu_count: 1})
    api.pending = [failing]
    provisioner.provisionFailures.push(new Error('the engine refused'))
    expect(await oneRound(api, provisioner)).toMatchObject({failed: 1})
    expect(gpuEvents().slice(-2)).toEqual([`allocated contract:${failing.contract_id} GPU-0`, `released contract:${failing.contract_id}`])
  })

  it('a contract without GPUs, and a backend that hands out none, allocate nothing', async () => {
    const api = new FakeMarketplace()
    api.pending = [contract()]
    await oneRound(api, new GpuProvisioner())
    api.pending = [contract({gpu_count: 1})]
    const plain = new FakeProvisioner()
    expect(await oneRound(api, plain)).toMatchObject({provisioned: 1})
    expect(gpuEvents().filter((event) => event.startsWith('allocated'))).toEqual([])
  })
})
