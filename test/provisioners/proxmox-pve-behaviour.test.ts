import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {ProxmoxProvisioner} from '../../src/provisioners/proxmox/proxmox-provisioner.js'
import {ProxmoxEmulator} from '../emulators/proxmox/emulator.js'
import {failure, settingsFrom} from '../support/provisioners.js'
import {contractFixture} from './contract-suite.js'

/**
 * The Proxmox backend against what a real PVE host does and the emulator now does too (each read in PVE's sources;
 * see the emulator's comments): long uptimes in task ids, answers that can't be read after a clone was made, the
 * renter's SSH key checked with ssh-keygen, and a cluster list whose names lag behind the configs.
 */

const made: ProxmoxProvisioner[] = []

function provisioner(target: ProxmoxEmulator, overrides: Record<string, unknown> = {}): ProxmoxProvisioner {
  const settings = settingsFrom('proxmox', {
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
  const provisioner = new ProxmoxProvisioner({...settings, firstPollMs: 20})
  made.push(provisioner)
  return provisioner
}

const signal = () => new AbortController().signal

afterAll(async () => {
  for (const provisioner of made.splice(0)) await provisioner.close()
})

describe('a host up for more than 497 days (9 hex digits of pstart in every task id)', () => {
  const longUp = new ProxmoxEmulator({uptimeSeconds: 600 * 86_400})
  beforeAll(() => longUp.start())
  afterAll(() => longUp.stop())

  it('provisions and terminates, leaving no VM behind', async () => {
    const instance = await provisioner(longUp).provision(contractFixture(), signal())
    expect([...longUp.tasks.keys()].every((upid) => /^UPID:pve:[0-9A-F]{8}:[0-9A-F]{9}:/.test(upid))).toBe(true)
    expect(longUp.guests).toHaveLength(1)
    await provisioner(longUp).terminate(instance)
    expect(longUp.guests).toHaveLength(0)
  })
})

describe('against PVE\'s answers', () => {
  const emulator = new ProxmoxEmulator()
  beforeAll(() => emulator.start())
  afterAll(() => emulator.stop())

  it('adopts its clone when the answer to the clone can\'t be read, and leaves no second VM', async () => {
    emulator.faults.answerReplaced = {method: 'POST', path: /\/clone$/, times: 1, data: 'UPID:pve:garbled'}
    const contract = contractFixture()
    const instance = await provisioner(emulator).provision(contract, signal())
    expect(emulator.guests.map((vm) => vm.config.name)).toEqual([`outpost-${contract.contract_id}`])
    await provisioner(emulator).terminate(instance)
    expect(emulator.guests).toHaveLength(0)
  })

  it('reports the unreadable answer, and leaves nothing, when the clone it answered then fails', async () => {
    emulator.faults.answerReplaced = {method: 'POST', path: /\/clone$/, times: 1, data: 42}
    emulator.faults.cloneFails = {error: 'clone failed: no space left', log: []}
    const error = await failure(provisioner(emulator).provision(contractFixture(), signal()))
    delete emulator.faults.cloneFails
    expect(error.message).toMatch(/unexpected answer from Proxmox/)
    expect(emulator.guests).toHaveLength(0)
  })

  it('fails for good on a renter SSH key that PVE refuses, and destroys the clone', async () => {
    const contract = contractFixture({ssh_pubkey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAInotakey renter@example'})
    const error = await failure(provisioner(emulator).provision(contract, signal()))
    expect(error.message).toContain("the renter's SSH key was refused by Proxmox: SSH public key validation error")
    expect(error.retryPossible).toBe(false)
    expect(emulator.guests).toHaveLength(0)
  })
})

describe('a cluster list that shows pvestatd\'s last pass (names and states lag by up to 10 s on a real host)', () => {
  const lagging = new ProxmoxEmulator({statusIntervalMs: 3_600_000, durations: {clone: 400}})
  beforeAll(() => lagging.start())
  afterAll(() => lagging.stop())

  async function cloneInProgress(): Promise<void> {
    while (!lagging.guests.some((vm) => vm.config.lock === 'clone')) await new Promise((resolve) => setTimeout(resolve, 5))
  }

  it('waits out its own clone in progress (no name in the list yet) after an abort, and resumes to exactly one VM', async () => {
    const contract = contractFixture()
    const controller = new AbortController()
    const first = provisioner(lagging).provision(contract, controller.signal)
    await cloneInProgress()
    controller.abort(new Error('agent shutting down'))
    await first.catch(() => undefined)
    // The list shows the clone by its lock alone, as pve-manager does before pvestatd's next pass.
    const instance = await provisioner(lagging).provision(contract, signal())
    expect(lagging.guests.map((vm) => vm.vmid)).toEqual([Number(instance.externalId)])
    // The list still names nothing; terminate reads the name from the config.
    await provisioner(lagging).terminate(instance)
    expect(lagging.guests).toHaveLength(0)
  })

  it('finds its finished clone that the list still calls "VM <vmid>", instead of cloning again', async () => {
    const contract = contractFixture()
    const first = provisioner(lagging).provision(contract, signal())
    await cloneInProgress()
    // pvestatd passes while the temporary config has no name yet: the list keeps "VM <vmid>" until its next pass.
    lagging.takeStatusSnapshots()
    const instance = await first
    const again = await provisioner(lagging).provision(contract, signal())
    expect(again.externalId).toBe(instance.externalId)
    expect(lagging.guests).toHaveLength(1)
    await provisioner(lagging).terminate(instance)
    expect(lagging.guests).toHaveLength(0)
  })
})
