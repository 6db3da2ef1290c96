import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {ProxmoxProvisionerSection} from '../../src/core/config/schema.js'
import {ProxmoxProvisioner} from '../../src/provisioners/proxmox/proxmox-provisioner.js'
import {ProxmoxEmulator} from '../emulators/proxmox/emulator.js'
import {contractFixture} from './contract-suite.js'

// Realistic task times: the backend itself needs 6 s before the VM has an address.
const emulator = new ProxmoxEmulator({durations: {clone: 2000, start: 1000, resize: 50, stop: 200, destroy: 200}, agentDelayMs: 3000})

beforeAll(() => emulator.start())
afterAll(() => emulator.stop())

describe('Proxmox time to ready', () => {
  it('stays close to the time the backend itself takes (clone 2 s + start 1 s + boot 3 s)', {timeout: 20_000}, async () => {
    const provisioner = new ProxmoxProvisioner(
      ProxmoxProvisionerSection.parse({
        host: '127.0.0.1',
        port: emulator.port,
        token_id: emulator.tokenId,
        token_secret: emulator.tokenSecret,
        tls_fingerprint: emulator.fingerprint,
        template_vmid: 9000,
        node: 'pve',
      }),
    )
    // An agent's connection is warm (heartbeat, capacity) before its first contract arrives.
    await provisioner.verifySetup()
    const started = performance.now()
    const instance = await provisioner.provision(contractFixture({storage_gb: 10}), new AbortController().signal)
    const elapsed = performance.now() - started
    console.log(`proxmox time to ready: ${Math.round(elapsed)} ms for 6000 ms of backend work`, instance.details?.timings_ms)
    // The target is 10% (`npm run bench` measures it: about 3%); the bound here leaves room for a loaded machine
    // and still fails a fixed 5 s poll, which lands past 9 s.
    expect(elapsed).toBeLessThan(7200)
    await provisioner.terminate(instance.externalId)
    await provisioner.close()
  })
})
