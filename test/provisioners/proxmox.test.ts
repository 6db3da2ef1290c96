import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'

import {UserError} from '../../src/core/errors.js'
import {encodeSshKeys, ProxmoxProvisioner, type ProxmoxSettings} from '../../src/provisioners/proxmox/proxmox-provisioner.js'
import {ProxmoxEmulator} from '../emulators/proxmox/emulator.js'
import {makeSelfSignedCertificate} from '../emulators/tls.js'
import {failure, settingsFrom} from '../support/provisioners.js'
import {contractFixture, provisionerContractSuite} from './contract-suite.js'

const emulator = new ProxmoxEmulator()
const open: ProxmoxProvisioner[] = []

function settings(overrides: Record<string, unknown> = {}, target: ProxmoxEmulator = emulator): ProxmoxSettings {
  return settingsFrom('proxmox', {
    host: '127.0.0.1',
    port: target.port,
    token_id: target.tokenId,
    token_secret: target.tokenSecret,
    tls_fingerprint: target.fingerprint,
    template_vmid: 9000,
    node: 'pve',
    shutdown_timeout_seconds: 1,
    ...overrides,
  })
}

function provisioner(overrides: Record<string, unknown> = {}, target: ProxmoxEmulator = emulator): ProxmoxProvisioner {
  // The emulator's tasks take tens of milliseconds; time-to-ready with the default polling is measured on its own.
  const made = new ProxmoxProvisioner({...settings(overrides, target), firstPollMs: 20})
  open.push(made)
  return made
}

const signal = () => new AbortController().signal

beforeAll(async () => {
  await emulator.start()
})

afterEach(async () => {
  for (const faultKey of Object.keys(emulator.faults)) delete emulator.faults[faultKey as keyof typeof emulator.faults]
  for (const made of open.splice(0)) await made.close()
})

afterAll(async () => {
  await emulator.stop()
})

provisionerContractSuite('proxmox (emulated Proxmox VE)', {
  create: () => provisioner(),
  failProvision: () => {
    emulator.faults.cloneFails = {error: 'clone failed: command failed', log: ['qemu-img: error while writing sector 0: Input/output error']}
    return {retryPossible: true}
  },
  countInstances: () => emulator.guests.length,
})

describe('Proxmox provisioner against the emulator', () => {
  it('configures the clone from the contract: cloud-init user, URL-encoded keys, random password, cores, memory, disk, tag', async () => {
    const contract = contractFixture({cpu_cores: 4, memory_mb: 4096, storage_gb: 32})
    const instance = await provisioner().provision(contract, signal())
    const vm = emulator.vms.get(Number(instance.externalId))
    expect(vm?.config).toMatchObject({
      name: `outpost-${contract.contract_id}`,
      ciuser: 'outpost',
      cores: 4,
      memory: '4096',
      ipconfig0: 'ip=dhcp',
      tags: 'outpost',
      agent: '1',
    })
    expect(decodeURIComponent(String(vm?.config.sshkeys))).toBe(`${contract.ssh_pubkey}\n`)
    expect(String(vm?.config.scsi0)).toMatch(/size=32G$/)
    expect(instance.credentials?.password).toBe(vm?.config.cipassword)
    expect(instance.credentials?.password?.length).toBeGreaterThanOrEqual(20)
    expect(instance.credentials?.username).toBe('outpost')
    expect(instance.ipv6Address).toMatch(/^2001:db8::/)
    expect(instance.details?.timings_ms).toMatchObject({clone: expect.any(Number), configure: expect.any(Number), start: expect.any(Number), address: expect.any(Number)})
    expect(vm?.status).toBe('running')
    await provisioner().terminate(instance)
  })

  it('encodes ssh keys the way Proxmox validates them (no "+" or raw spaces)', () => {
    expect(encodeSshKeys('ssh-ed25519 AAAA+b/c= a@b')).toBe('ssh-ed25519%20AAAA%2Bb%2Fc%3D%20a%40b%0A')
  })

  it('refuses a host whose certificate does not match the pinned fingerprint before sending the token', async () => {
    const other = makeSelfSignedCertificate('other.test')
    const before = emulator.requests.length
    const error = await failure(provisioner({tls_fingerprint: other.fingerprint256}).provision(contractFixture(), signal()))
    expect(error.message).toContain('fingerprint')
    expect(error.message).toContain(emulator.fingerprint)
    expect(error.retryPossible).toBe(false)
    expect(emulator.requests.length).toBe(before)

    const checks = await provisioner({tls_fingerprint: other.fingerprint256}).verifySetup()
    expect(checks[0]).toMatchObject({name: 'proxmox api', ok: false})
    expect(checks[0]?.remedy).toContain('tls_fingerprint')
    expect(emulator.requests.length).toBe(before)
  })

  it('verifies the certificate when no fingerprint is pinned (a self-signed host is refused)', async () => {
    const before = emulator.requests.length
    const error = await failure(provisioner({tls_fingerprint: undefined}).provision(contractFixture(), signal()))
    expect(error.message).toMatch(/TLS error: .*self-signed/i)
    expect(emulator.requests.length).toBe(before)
  })

  it('validates the token before use and reports a refused one as not retryable', async () => {
    expect(() => new ProxmoxProvisioner({...settings(), tokenId: 'outpost-agent'})).toThrow(UserError)
    expect(() => new ProxmoxProvisioner({...settings(), tokenSecret: 'not-a-uuid'})).toThrow(/lowercase UUID/)
    const wrong = provisioner({token_secret: '00000000-0000-0000-0000-000000000000'})
    const error = await failure(wrong.provision(contractFixture(), signal()))
    expect(error.message).toContain('401 authentication failure')
    expect(error.retryPossible).toBe(false)
    const checks = await wrong.verifySetup()
    expect(checks.find((check) => check.name === 'proxmox token')).toMatchObject({ok: false})
  })

  it('adopts its own VM when a dropped connection makes the package send the clone twice', async () => {
    emulator.faults.dropAfterHandling = {method: 'POST', path: /\/clone$/, times: 1}
    const before = emulator.guests.length
    const contract = contractFixture()
    const instance = await provisioner().provision(contract, signal())
    const clones = emulator.requests.filter((request) => request.method === 'POST' && request.path.endsWith('/clone'))
    expect(clones.slice(-2).map((request) => request.params.newid)).toEqual([instance.externalId, instance.externalId])
    expect(emulator.guests.length).toBe(before + 1)
    await provisioner().terminate(instance)
  })

  it('never takes over a VM of someone else that got the VMID first', async () => {
    emulator.faults.nextIdTakenBy = 'customer-db'
    const error = await failure(provisioner().provision(contractFixture(), signal()))
    expect(error.message).toMatch(/belongs to another VM \("customer-db"\)/)
    expect(error.retryPossible).toBe(true)
    const rival = emulator.guests.find((vm) => vm.config.name === 'customer-db')
    expect(rival?.status).toBe('running')
    if (rival) emulator.vms.delete(rival.vmid)
  })

  it('puts the tail of the task log in the error of a failed clone, and leaves no VM', async () => {
    emulator.faults.cloneFails = {
      error: 'clone failed: storage migration failed: No space left on device',
      log: ['  transferred 1.0 GiB of 10.0 GiB (10.00%)', "qemu-img: error while writing at byte 1073741824: No space left on device"],
    }
    const before = emulator.guests.length
    const error = await failure(provisioner().provision(contractFixture(), signal()))
    expect(error.message).toContain('failed: clone failed: storage migration failed')
    expect(error.message).toContain('qemu-img: error while writing')
    expect(error.message).toContain('TASK ERROR')
    expect(emulator.guests.length).toBe(before)
  })

  it('gives up on a guest agent that never answers, and destroys the VM', async () => {
    emulator.faults.agentNeverAnswers = true
    const before = emulator.guests.length
    const error = await failure(provisioner({address_timeout_seconds: 1}).provision(contractFixture(), signal()))
    expect(error.message).toMatch(/guest agent of VM \d+ reporting an address did not finish within 1 s/)
    expect(error.retryPossible).toBe(true)
    expect(emulator.guests.length).toBe(before)
  })

  it('keeps the failed VM with keep_failed = true', async () => {
    emulator.faults.agentNeverAnswers = true
    const contract = contractFixture()
    const error = await failure(provisioner({address_timeout_seconds: 1, keep_failed: true}).provision(contract, signal()))
    expect(error.message).toMatch(/VM \d+ kept: keep_failed = true/)
    const kept = emulator.guests.find((vm) => vm.config.name === `outpost-${contract.contract_id}`)
    expect(kept).toBeDefined()
    delete emulator.faults.agentNeverAnswers
    await provisioner().terminate({contractId: contract.contract_id, externalId: String(kept?.vmid)})
  })

  it('stops a start task that hangs, then cleans up', async () => {
    emulator.faults.startHangs = true
    const before = emulator.guests.length
    const error = await failure(provisioner({task_timeout_seconds: 1}).provision(contractFixture(), signal()))
    expect(error.message).toMatch(/start of VM \d+ did not finish within 1 s/)
    const start = [...emulator.tasks.values()].filter((task) => task.type === 'qmstart').at(-1)
    expect(start?.exitstatus).toBe('interrupted by signal')
    expect(emulator.guests.length).toBe(before)
  })

  it('reports slow answers past the request timeout as a retryable error', async () => {
    emulator.faults.slowResponseMs = 1300
    const error = await failure(provisioner({request_timeout_seconds: 1}).provision(contractFixture(), signal()))
    expect(error.retryPossible).toBe(true)
    expect(error.message).toMatch(/network error/)
  })

  it('treats a 500 on destroy as an error to retry, not as "already gone"', async () => {
    const instance = await provisioner().provision(contractFixture(), signal())
    emulator.faults.deleteFails = {times: 1, reason: "unable to remove volume 'local-lvm:vm-disk-0' - got timeout"}
    const error = await failure(provisioner().terminate(instance))
    expect(error.retryPossible).toBe(true)
    expect(error.message).toContain('got timeout')
    expect(emulator.vms.has(Number(instance.externalId))).toBe(true)
    await provisioner().terminate(instance)
    expect(emulator.vms.has(Number(instance.externalId))).toBe(false)
  })

  it('never destroys a VM that is not the contract\'s, even when the template is named as its instance', async () => {
    await provisioner().terminate({contractId: contractFixture().contract_id, externalId: '9000'})
    expect(emulator.vms.has(9000)).toBe(true)
  })

  it('hands out static addresses from ip_pool, one per VM, skipping the gateway', async () => {
    const pool = {first: '192.0.2.1', last: '192.0.2.20', prefix_length: 24, gateway: '192.0.2.1'}
    const made = provisioner({ip_pool: pool})
    const [a, b] = await Promise.all([made.provision(contractFixture(), signal()), made.provision(contractFixture(), signal())])
    expect([a.ipAddress, b.ipAddress].sort()).toEqual(['192.0.2.2', '192.0.2.3'])
    expect(emulator.vms.get(Number(a.externalId))?.config.ipconfig0).toBe(`ip=${a.ipAddress}/24,gw=192.0.2.1`)
    await made.terminate(a)
    await made.terminate(b)
  })

  it('reports health from the VM status and a guest-agent ping', async () => {
    const made = provisioner()
    const instance = await made.provision(contractFixture(), signal())
    expect(await made.health(instance)).toMatchObject({status: 'healthy', details: {guest_agent: 'ok'}})
    emulator.faults.agentNeverAnswers = true
    expect(await made.health(instance)).toMatchObject({status: 'unhealthy', details: {vm_status: 'running'}})
    delete emulator.faults.agentNeverAnswers
    const vm = emulator.vms.get(Number(instance.externalId))
    if (vm) vm.status = 'stopped'
    expect(await made.health(instance)).toMatchObject({status: 'unhealthy', details: {vm_status: 'stopped'}})
    await made.terminate(instance)
  })

  it('reads capacity from the node status and storage', async () => {
    const capacity = await provisioner().capacity()
    expect(capacity).toMatchObject({cpuCores: 16, gpuCount: 0})
    const running = emulator.guests.filter((vm) => vm.status === 'running').reduce((sum, vm) => sum + Number(vm.config.memory), 0)
    expect(capacity?.memoryMb).toBe(65_536 - 2048 - running)
    expect(capacity?.storageGb).toBeGreaterThan(400)
  })

  it('checks the setup for doctor: API, token, template, storage', async () => {
    const checks = await provisioner().verifySetup()
    expect(checks.map((check) => [check.name, check.ok])).toEqual([
      ['proxmox api', true],
      ['proxmox token', true],
      ['proxmox template', true],
      ['proxmox storage', true],
    ])
    const missing = await provisioner({template_vmid: 9100}).verifySetup()
    expect(missing.find((check) => check.name === 'proxmox template')).toMatchObject({ok: false, message: 'no VM 9100'})
    const full = await new ProxmoxProvisioner({...settings(), minimumStorageGb: 10_000, firstPollMs: 20}).verifySetup()
    expect(full.find((check) => check.name === 'proxmox storage')?.ok).toBe(false)
  })
})

describe('Proxmox provisioner on a cluster (node = "auto")', () => {
  const cluster = new ProxmoxEmulator({
    nodes: [
      {name: 'pve1', cpus: 8, memoryMb: 16_384, storages: [{storage: 'local-lvm', type: 'lvmthin', totalGb: 200}]},
      {name: 'pve2', cpus: 32, memoryMb: 131_072, storages: [{storage: 'local-lvm', type: 'lvmthin', totalGb: 800}]},
      {name: 'pve3', cpus: 64, memoryMb: 262_144, storages: [{storage: 'ceph', type: 'rbd', totalGb: 800, shared: true}]},
    ],
    template: {vmid: 9000, node: 'pve1', name: 'ubuntu-cloud', diskGb: 10, storage: 'local-lvm'},
  })
  beforeAll(() => cluster.start())
  afterAll(() => cluster.stop())

  it('puts a full clone on the node with the most free memory that has the storage', async () => {
    const made = provisioner({node: 'auto', clone: 'full'}, cluster)
    const instance = await made.provision(contractFixture(), signal())
    expect(cluster.vms.get(Number(instance.externalId))?.node).toBe('pve2')
    expect(instance.details).toMatchObject({node: 'pve2'})
    await made.terminate(instance)
  })

  it('keeps a linked clone beside its template when the storage is not shared', async () => {
    const made = provisioner({node: 'auto', clone: 'linked'}, cluster)
    const instance = await made.provision(contractFixture(), signal())
    expect(cluster.vms.get(Number(instance.externalId))?.node).toBe('pve1')
    await made.terminate(instance)
  })
})
