import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {GpuSection} from '../../src/core/config/schema.js'
import type {GpuUnit} from '../../src/gpu/allocator.js'
import {ProxmoxProvisioner} from '../../src/provisioners/proxmox/proxmox-provisioner.js'
import {ProxmoxEmulator} from '../emulators/proxmox/emulator.js'
import {failure, settingsFrom} from '../support/provisioners.js'
import {contractFixture} from './contract-suite.js'

/**
 * GPU passthrough on the Proxmox backend against the emulator, which checks hostpci<n> and the PCI resource mappings
 * as PVE 8 does (test/emulators/proxmox/pci.ts): the VM gets `hostpci<n>: mapping=<id>,pcie=1` and the q35 machine,
 * PVE refuses a raw address from a token and a device another running VM holds, and doctor checks the mappings.
 */

const H100 = {node: 'pve', path: '0000:01:00.0', id: '10de:2331', iommugroup: 12, subsystemId: '10de:1626'}
const H100_B = {node: 'pve', path: '0000:41:00.0', id: '10de:2331', iommugroup: 40, subsystemId: '10de:1626'}
const emulator = new ProxmoxEmulator({pciDevices: [H100, H100_B]})
const open: ProxmoxProvisioner[] = []
const signal = () => new AbortController().signal

function provisioner(passthrough: Record<string, unknown>[]): ProxmoxProvisioner {
  const made = new ProxmoxProvisioner({
    ...settingsFrom(
      'proxmox',
      {host: '127.0.0.1', port: emulator.port, token_id: emulator.tokenId, token_secret: emulator.tokenSecret, tls_fingerprint: emulator.fingerprint, template_vmid: 9000, node: 'pve', shutdown_timeout_seconds: 1},
      {gpu: GpuSection.parse({passthrough})},
    ),
    firstPollMs: 20,
  })
  open.push(made)
  return made
}

const MAPPED = [
  {mapping: 'outpost-gpu0', model: 'H100 PCIe'},
  {mapping: 'outpost-gpu1', model: 'H100 PCIe'},
]

beforeAll(async () => {
  await emulator.start()
  emulator.pci.mappings.set('outpost-gpu0', {id: 'outpost-gpu0', map: [`node=pve,path=0000:01:00,id=10de:2331,iommugroup=12,subsystem-id=10de:1626`]})
  emulator.pci.mappings.set('outpost-gpu1', {id: 'outpost-gpu1', map: [`node=pve,path=0000:41:00.0,id=10de:2331,iommugroup=40`]})
})
afterAll(async () => {
  for (const made of open) await made.close()
  await emulator.stop()
})

describe('Proxmox GPU passthrough (the emulator)', () => {
  it('capacity and the devices handed out are the [gpu] passthrough entries', async () => {
    const backend = provisioner(MAPPED)
    expect(await backend.gpuUnits()).toEqual([
      {id: 'outpost-gpu0', model: 'H100 PCIe'},
      {id: 'outpost-gpu1', model: 'H100 PCIe'},
    ])
    expect(await backend.capacity()).toMatchObject({gpuCount: 2, gpuModels: ['H100 PCIe']})
    expect(await provisioner([]).capacity()).toMatchObject({gpuCount: 0, gpuModels: []})
  })

  it('gives the VM its allocated mapping on the PCIe bus with the q35 machine; PVE refuses the same device to a second running VM', async () => {
    const backend = provisioner(MAPPED)
    const [gpu0] = await backend.gpuUnits()
    const first = contractFixture({gpu_count: 1, product_type: 'gpu'})
    const instance = await backend.provision(first, signal(), [gpu0!])
    const vm = emulator.vms.get(Number(instance.externalId))
    expect(vm?.config).toMatchObject({hostpci0: 'mapping=outpost-gpu0,pcie=1', machine: 'q35'})
    expect(vm?.pciPaths).toEqual(['0000:01:00.0'])

    // Handed the same device (never by the agent's allocator; here on purpose), the start task fails as PVE's does.
    const second = contractFixture({gpu_count: 1, product_type: 'gpu'})
    const error = await failure(backend.provision(second, signal(), [gpu0!]))
    expect(error.message).toContain(`PCI device '0000:01:00.0' already in use by VMID '${instance.externalId}'`)
    await backend.terminate({contractId: first.contract_id, externalId: instance.externalId})
  })

  it('a GPU contract on a host that passes none through fails with the reason, before a VM is made', async () => {
    const before = emulator.guests.length
    const error = await failure(provisioner([]).provision(contractFixture({gpu_count: 1}), signal()))
    expect(error.message).toMatch(/asks for 1 GPUs and this host passes no GPU through \(\[gpu\] passthrough is empty\)/)
    expect(error.retryPossible).toBe(false)
    expect(emulator.guests.length).toBe(before)
  })

  it('a raw address is refused to the API token, as PVE refuses it to anyone but root@pam; doctor says to map it', async () => {
    const backend = provisioner([{address: '0000:41:00.0', model: 'H100 PCIe'}])
    const units: GpuUnit[] = await backend.gpuUnits()
    const error = await failure(backend.provision(contractFixture({gpu_count: 1}), signal(), units))
    expect(error.message).toContain("only root can set 'hostpci0' config for non-mapped devices")
    const check = (await backend.verifySetup()).find((item) => item.name === 'proxmox gpus')
    expect(check).toMatchObject({ok: false, remedy: expect.stringContaining('outpost setup proxmox --gpus all')})
  })

  it('doctor checks that each mapping exists and matches the hardware on the node', async () => {
    expect((await provisioner(MAPPED).verifySetup()).find((item) => item.name === 'proxmox gpus')).toMatchObject({ok: true, message: '2 GPUs mapped on pve: outpost-gpu0 (H100 PCIe), outpost-gpu1 (H100 PCIe)'})
    emulator.pci.mappings.set('outpost-stale', {id: 'outpost-stale', map: ['node=pve,path=0000:41:00.0,id=10de:2330']})
    const stale = (await provisioner([...MAPPED, {mapping: 'outpost-stale', model: 'H100 PCIe'}, {mapping: 'outpost-none', model: 'H100 PCIe'}]).verifySetup()).find((item) => item.name === 'proxmox gpus')
    expect(stale?.ok).toBe(false)
    expect(stale?.message).toBe("mapping outpost-stale: Invalid configuration: 'id' does not match for 'outpost-stale' (10de:2331 != 10de:2330); mapping outpost-none does not exist")
    emulator.pci.mappings.delete('outpost-stale')
  })
})

describe('the emulator\'s PCI mapping routes, driven by proxmoxer', () => {
  it('creates, lists with checks, reads and deletes a mapping; refuses a bad map entry and a duplicate as PVE does', async () => {
    const script = `
import json, os, urllib3
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
urllib3.disable_warnings()
e = os.environ
api = ProxmoxAPI(e["PVE_HOST"], port=int(e["PVE_PORT"]), user=e["PVE_USER"], token_name=e["PVE_TOKEN_NAME"], token_value=e["PVE_TOKEN_VALUE"], verify_ssl=False, timeout=10)
seen = {}
def refused(call):
    try:
        call()
        return None
    except ResourceException as error:
        return [error.status_code, str(error), error.errors]
api.cluster.mapping.pci.post(id="proxmoxer-gpu", map=["node=pve,path=0000:41:00.0,id=10de:2331,iommugroup=40"], description="by proxmoxer")
seen["list"] = [item for item in api.cluster.mapping.pci.get(**{"check-node": "pve"}) if item["id"] == "proxmoxer-gpu"]
seen["one"] = api.cluster.mapping.pci("proxmoxer-gpu").get()
seen["duplicate"] = refused(lambda: api.cluster.mapping.pci.post(id="proxmoxer-gpu", map=["node=pve,path=0000:41:00.0,id=10de:2331"]))
seen["bad_map"] = refused(lambda: api.cluster.mapping.pci.post(id="proxmoxer-bad", map=["node=pve,path=41:00.0,id=10de:2331"]))
api.cluster.mapping.pci("proxmoxer-gpu").delete()
seen["after_delete"] = [item["id"] for item in api.cluster.mapping.pci.get()]
print(json.dumps(seen))
`
    const [user, tokenName] = emulator.tokenId.split('!')
    const result = await execa('/usr/bin/python3', ['-c', script], {
      env: {PVE_HOST: '127.0.0.1', PVE_PORT: String(emulator.port), PVE_USER: user ?? '', PVE_TOKEN_NAME: tokenName ?? '', PVE_TOKEN_VALUE: emulator.tokenSecret},
      reject: false,
    })
    expect(result.exitCode, result.stderr).toBe(0)
    const seen = JSON.parse(result.stdout) as Record<string, unknown>
    expect(seen.list).toEqual([{id: 'proxmoxer-gpu', description: 'by proxmoxer', map: ['node=pve,path=0000:41:00.0,id=10de:2331,iommugroup=40'], digest: 'd1', checks: []}])
    expect(seen.one).toMatchObject({id: 'proxmoxer-gpu', map: ['node=pve,path=0000:41:00.0,id=10de:2331,iommugroup=40']})
    expect(seen.duplicate).toEqual([500, expect.stringContaining("create hardware mapping failed: pci ID 'proxmoxer-gpu' already defined"), null])
    expect((seen.bad_map as unknown[])[0]).toBe(400)
    expect(seen.after_delete).toEqual(['outpost-gpu0', 'outpost-gpu1'])
  })
})

