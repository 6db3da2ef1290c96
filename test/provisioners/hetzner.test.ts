import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'

import {HetznerProvisioner, md5Fingerprint} from '../../src/provisioners/hetzner/hetzner-provisioner.js'
import {HetznerEmulator} from '../emulators/hetzner/emulator.js'
import {failure, settingsFrom} from '../support/provisioners.js'
import {contractFixture, provisionerContractSuite} from './contract-suite.js'

const emulator = new HetznerEmulator()
const signal = () => new AbortController().signal

function provisioner(overrides: Record<string, unknown> = {}, target: HetznerEmulator = emulator): HetznerProvisioner {
  return new HetznerProvisioner(settingsFrom('hetzner', {token: target.token, api_url: target.baseUrl, action_timeout_seconds: 10, ...overrides}))
}

/** Nothing of outpost's may be left in the project after a test: no server, no SSH key. */
function expectClean(): void {
  expect([...emulator.servers.values()].filter((server) => server.labels['outpost.managed'] === 'true')).toEqual([])
  expect([...emulator.sshKeys.values()].filter((key) => key.labels['outpost.managed'] === 'true')).toEqual([])
}

beforeAll(() => emulator.start())
afterEach(() => {
  for (const fault of Object.keys(emulator.faults)) delete emulator.faults[fault as keyof typeof emulator.faults]
})
afterAll(() => emulator.stop())

provisionerContractSuite('hetzner (emulated Hetzner Cloud API)', {
  create: () => provisioner(),
  failProvision: () => {
    emulator.faults.actionFails = {command: 'create_server', times: 1, code: 'action_failed', message: 'Action failed'}
    return {retryPossible: true}
  },
  countInstances: () => emulator.servers.size,
})

describe('Hetzner provisioner against the emulator', () => {
  it('creates the cheapest server type that fits, in the region, labelled, with the renter key uploaded and then removed', async () => {
    const contract = contractFixture({cpu_cores: 2, memory_mb: 4096, storage_gb: 40})
    const instance = await provisioner({region: 'eu-central'}).provision(contract, signal())
    const server = emulator.servers.get(Number(instance.externalId))
    // cx22 is the cheapest x86 type with 2 cores, 4 GB and 40 GB; Helsinki sells it cheapest; cx11 is deprecated.
    expect(server).toMatchObject({name: `outpost-${contract.contract_id}`, serverType: 'cx22', location: 'hel1', image: 'ubuntu-24.04', status: 'running'})
    expect(server?.labels).toEqual({'outpost.contract': contract.contract_id, 'outpost.managed': 'true'})
    expect(server?.sshKeys).toHaveLength(1)
    const uploads = emulator.requests.filter((request) => request.path === '/v1/ssh_keys' && request.method === 'POST')
    expect(uploads.at(-1)?.status).toBe(201)
    expect(instance).toMatchObject({ipAddress: server?.ipv4, ipv6Address: expect.stringMatching(/^2001:db8:[0-9a-f]+::1$/), sshPort: 22, details: {server_type: 'cx22', location: 'hel1'}})
    expect(instance.credentials).toBeUndefined()
    expect(emulator.sshKeys.size).toBe(0)
    await provisioner().terminate(instance)
    expectClean()
  })

  it('picks by network zone or location, and by architecture', async () => {
    const request = {cpuCores: 2, memoryMb: 2048, storageGb: 20}
    expect((await provisioner({region: 'us-east'}).placements(request))[0]).toMatchObject({serverType: 'cpx11', location: 'ash'})
    expect((await provisioner({region: 'nbg1'}).placements(request))[0]).toMatchObject({serverType: 'cx22', location: 'nbg1'})
    expect((await provisioner({architecture: 'arm'}).placements(request))[0]).toMatchObject({serverType: 'cax11'})
    expect((await provisioner({server_types: ['ccx13']}).placements(request))[0]).toMatchObject({serverType: 'ccx13', location: 'fsn1'})
    const none = await failure(provisioner({region: 'mars1'}).placements(request))
    expect(none.retryPossible).toBe(false)
    const tooBig = await failure(provisioner().provision(contractFixture({cpu_cores: 64}), signal()))
    expect(tooBig.message).toMatch(/no x86 server type has 64 cores/)
    expect(tooBig.retryPossible).toBe(false)
    const gpu = await failure(provisioner().provision(contractFixture({gpu_count: 1}), signal()))
    expect(gpu.message).toContain('no GPU server types')
    expectClean()
  })

  it("uses the renter's key when the project has it already, and leaves it there", async () => {
    const contract = contractFixture()
    const owned = emulator.addKey('renter-laptop', contract.ssh_pubkey)
    expect(owned.fingerprint).toBe(md5Fingerprint(contract.ssh_pubkey))
    const instance = await provisioner().provision(contract, signal())
    expect(emulator.servers.get(Number(instance.externalId))?.sshKeys).toEqual([owned.id])
    expect(emulator.sshKeys.has(owned.id)).toBe(true)
    await provisioner().terminate(instance)
    emulator.sshKeys.delete(owned.id)
    expectClean()
  })

  it('returns the root password Hetzner sets when the contract has no SSH key', async () => {
    const instance = await provisioner().provision(contractFixture({ssh_pubkey: ''}), signal())
    expect(instance.credentials).toMatchObject({username: 'root', password: expect.stringMatching(/^\S{12,}$/)})
    await provisioner().terminate(instance)
    expectClean()
  })

  it('moves on to the next cheapest placement when one has no capacity (resource_unavailable)', async () => {
    emulator.faults.resourceUnavailable = {times: 1, location: 'hel1'}
    const instance = await provisioner({region: 'eu-central'}).provision(contractFixture({cpu_cores: 2, memory_mb: 4096, storage_gb: 40}), signal())
    expect(emulator.servers.get(Number(instance.externalId))).toMatchObject({serverType: 'cx22', location: 'fsn1'})
    await provisioner().terminate(instance)
    expectClean()
  })

  it('fails retryably, leaving nothing, when no placement has capacity', async () => {
    emulator.faults.resourceUnavailable = {times: 10}
    const error = await failure(provisioner().provision(contractFixture(), signal()))
    expect(error.message).toMatch(/no capacity for outpost-[0-9a-f]+: .*412 resource_unavailable: error during placement/)
    expect(error.retryPossible).toBe(true)
    expect(emulator.servers.size).toBe(0)
    expectClean()
  })

  it('deletes the server of a failed create action and says why it failed', async () => {
    emulator.faults.actionFails = {command: 'create_server', times: 1, code: 'action_failed', message: 'Server creation failed: out of IPv4 addresses'}
    const error = await failure(provisioner().provision(contractFixture(), signal()))
    expect(error.message).toMatch(/create of server \d+ failed \(action \d+, create_server\): action_failed: Server creation failed: out of IPv4 addresses/)
    expect(error.retryPossible).toBe(true)
    expect(emulator.servers.size).toBe(0)
    expectClean()
  })

  it('waits out 429s, then carries on', async () => {
    emulator.faults.rateLimited = 2
    const instance = await provisioner().provision(contractFixture(), signal())
    expect(emulator.rateLimitedAnswers).toBeGreaterThanOrEqual(2)
    await provisioner().terminate(instance)
    expectClean()
  })

  it('treats a 5xx on delete as an error to retry, never as "already gone"', async () => {
    const instance = await provisioner().provision(contractFixture(), signal())
    // More failures than the client's own retries of a DELETE.
    emulator.faults.deleteFails = 4
    const error = await failure(provisioner().terminate(instance))
    expect(error.message).toContain('503 service_error')
    expect(error.retryPossible).toBe(true)
    expect(emulator.servers.has(Number(instance.externalId))).toBe(true)
    await provisioner().terminate(instance)
    expectClean()
  })

  it('never takes over a server of someone else with the contract name, nor deletes one', async () => {
    const contract = contractFixture()
    const foreign = emulator.addForeignServer(`outpost-${contract.contract_id}`)
    const error = await failure(provisioner().provision(contract, signal()))
    expect(error.message).toContain('is taken by a server outpost did not make')
    expect(error.retryPossible).toBe(false)
    await provisioner().terminate({contractId: contract.contract_id, externalId: String(foreign.id)})
    expect(emulator.servers.has(foreign.id)).toBe(true)
    emulator.servers.delete(foreign.id)
    expectClean()
  })

  it('reports a refused token as not retryable, and doctor says what to do', async () => {
    const wrong = provisioner({token: 'x'.repeat(64)})
    const error = await failure(wrong.provision(contractFixture(), signal()))
    expect(error.message).toContain('401 unauthorized: unable to authenticate')
    expect(error.retryPossible).toBe(false)
    const checks = await wrong.verifySetup()
    expect(checks[0]).toMatchObject({name: 'hetzner api', ok: false})
    expect(checks[0]?.remedy).toContain('OUTPOST_PROVISIONER_HETZNER_TOKEN')
    expect((await provisioner().verifySetup()).map((check) => [check.name, check.ok])).toEqual([
      ['hetzner api', true],
      ['hetzner image', true],
      ['hetzner server types', true],
    ])
  })

  it('reports health from the server status', async () => {
    const made = provisioner()
    const instance = await made.provision(contractFixture(), signal())
    expect(await made.health(instance)).toMatchObject({status: 'healthy', details: {server_status: 'running'}})
    const server = emulator.servers.get(Number(instance.externalId))
    if (server) server.status = 'off'
    expect(await made.health(instance)).toMatchObject({status: 'unhealthy', details: {server_status: 'off'}})
    await made.terminate(instance)
    expect(await made.health(instance)).toMatchObject({status: 'unhealthy', details: {reason: 'server not found'}})
  })
})

describe('Hetzner provisioner under a tight rate limit', () => {
  // 8 requests, refilled at 4 per second: a provision and a terminate need more than that.
  const limited = new HetznerEmulator({limit: 8, windowSeconds: 2})
  beforeAll(() => limited.start())
  afterAll(() => limited.stop())

  it('slows down from the RateLimit headers instead of running into 429s', async () => {
    const made = provisioner({}, limited)
    const started = Date.now()
    const instance = await made.provision(contractFixture(), signal())
    await made.terminate(instance)
    await made.terminate(instance)
    expect(limited.requests.length).toBeGreaterThan(8)
    expect(limited.rateLimitedAnswers).toBe(0)
    expect(Date.now() - started).toBeGreaterThan(250)
    expect(limited.servers.size).toBe(0)
  })
})
