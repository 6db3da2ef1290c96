import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {HetznerProvisioner} from '../../src/provisioners/hetzner/hetzner-provisioner.js'
import {HetznerEmulator} from '../emulators/hetzner/emulator.js'
import {settingsFrom} from '../support/provisioners.js'
import {contractFixture} from './contract-suite.js'

/** The Hetzner backend on paths the emulator could not serve before it took ids where the API takes "ID or name". */

const emulator = new HetznerEmulator()
beforeAll(() => emulator.start())
afterAll(() => emulator.stop())

describe('Hetzner provisioner with an image given by id', () => {
  it('creates the server from that image, and doctor finds it', async () => {
    const provisioner = new HetznerProvisioner(settingsFrom('hetzner', {token: emulator.token, api_url: emulator.baseUrl, image: '114690387', action_timeout_seconds: 10}))
    const instance = await provisioner.provision(contractFixture(), new AbortController().signal)
    expect(emulator.servers.get(Number(instance.externalId))).toMatchObject({image: 'debian-12', imageId: 114690387, status: 'running'})
    expect((await provisioner.verifySetup()).find((check) => check.name === 'hetzner image')).toMatchObject({ok: true})
    await provisioner.terminate(instance)
    expect(emulator.servers.size).toBe(0)
  })

  it('doctor looks an image id up by id, and says so when there is none', async () => {
    const provisioner = new HetznerProvisioner(settingsFrom('hetzner', {token: emulator.token, api_url: emulator.baseUrl, image: '999999999'}))
    expect((await provisioner.verifySetup()).find((check) => check.name === 'hetzner image')).toMatchObject({ok: false})
  })
})
