import {existsSync, mkdtempSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {ProxmoxEmulator} from '../emulators/proxmox/emulator.js'
import {parseJson, runCli, tempConfigDir} from '../support/cli.js'
import {SSHD, startFakeProxmoxHost, type FakePciDevice, type FakeProxmoxHost} from '../setup/proxmox/fake-host.js'

/**
 * `outpost setup proxmox --gpus` (built CLI, a real OpenSSH server, the fake PVE tools, the API emulator): the host's
 * NVIDIA GPUs found with pvesh and lspci, a resource mapping per GPU, the role allowed to use mappings, and
 * `[gpu] passthrough` in the config, which doctor then checks against the API.
 */

const TOKEN_SECRET = '5e1f0c2a-9b3d-4e6f-8a7b-0c1d2e3f4a5b'
const haveSshd = existsSync(SSHD)

const H100: FakePciDevice = {
  id: '0000:01:00.0', class: '0x030200', class_name: '3D controller', vendor: '0x10de', device: '0x2331', subsystem_vendor: '0x10de', subsystem_device: '0x1626',
  iommugroup: 12, vendor_name: 'NVIDIA Corporation', device_name: 'GH100 [H100 PCIe]', driver: 'vfio-pci',
}
const A6000: FakePciDevice = {
  id: '0000:41:00.0', class: '0x030000', class_name: 'VGA compatible controller', vendor: '0x10de', device: '0x2230', subsystem_vendor: '0x10de', subsystem_device: '0x1459',
  iommugroup: 40, vendor_name: 'NVIDIA Corporation', device_name: 'GA102GL [RTX A6000]', driver: 'nvidia',
}
const A6000_AUDIO: FakePciDevice = {
  id: '0000:41:00.1', class: '0x040300', class_name: 'Audio device', vendor: '0x10de', device: '0x1aef', subsystem_vendor: '0x10de', subsystem_device: '0x1459',
  iommugroup: 40, vendor_name: 'NVIDIA Corporation', device_name: 'GA102 High Definition Audio Controller', driver: 'vfio-pci',
}
const NIC: FakePciDevice = {id: '0000:02:00.0', class: '0x020000', class_name: 'Ethernet controller', vendor: '0x8086', device: '0x1533', iommugroup: 13, vendor_name: 'Intel Corporation', device_name: 'I210 Gigabit Network Connection'}

interface SetupJson {
  gpus?: {mapped: {address: string; model: string; mapping: string; status: string; driver?: string; iommugroup: number}[]; notes: string[]}
  config: {file: string; status: string}
  next_steps: string[]
}

// Each test is a whole wizard run over SSH (a dozen CLI and remote commands): minutes on a busy 2-core machine.
describe.skipIf(!haveSshd)('outpost setup proxmox --gpus (built CLI, OpenSSH, fake PVE tools, API emulator)', {timeout: 240_000}, () => {
  let host: FakeProxmoxHost
  let emulator: ProxmoxEmulator
  let marketplace: MarketplaceServer

  beforeAll(async () => {
    emulator = new ProxmoxEmulator({
      tokenSecret: TOKEN_SECRET,
      template: {vmid: 9000, node: 'pve', name: 'ubuntu-24.04-cloudinit', diskGb: 10, storage: 'local-lvm'},
      pciDevices: [H100, A6000, A6000_AUDIO].map((device) => ({node: 'pve', path: device.id, id: `${device.vendor.slice(2)}:${device.device.slice(2)}`, iommugroup: device.iommugroup})),
    })
    await emulator.start()
    ;[host, marketplace] = await Promise.all([
      startFakeProxmoxHost(emulator.certificate.cert),
      startMarketplace({dataDir: mkdtempSync(join(tmpdir(), 'outpost-devnet-')), port: 0, host: '127.0.0.1', logError: () => undefined}),
    ])
  })

  afterAll(async () => {
    await Promise.all([host?.stop(), emulator?.stop(), marketplace?.stop()])
  })

  beforeEach(() => {
    host.reset()
    host.configure({node: 'pve', tokenSecret: TOKEN_SECRET, pci: [H100, NIC, A6000, A6000_AUDIO]})
  })

  const flags = (gpus: string) => [
    'setup', 'proxmox', '--json', '--host', '127.0.0.1', '--ssh-port', String(host.port), '--ssh-key', host.userKey, '--host-key-fingerprint', host.hostKeyFingerprint,
    '--storage', 'local-lvm', '--image-dir', host.imageDir, '--api-port', String(emulator.port), '--endpoint', marketplace.endpoint, '--gpus', gpus,
  ]
  const env = (dir: string) => ({OUTPOST_CONFIG_DIR: dir, SSH_AUTH_SOCK: undefined, OUTPOST_SSH_PASSWORD: undefined})

  it('maps every NVIDIA GPU, lets the role use the mappings, writes [gpu] passthrough; doctor checks them; a second run changes nothing', async () => {
    const dir = tempConfigDir('outpost-setup-gpu-')
    const first = await runCli(flags('all'), {env: env(dir)})
    expect(first.exitCode, first.stderr + first.stdout).toBe(0)
    const result = parseJson<SetupJson>(first)
    expect(result.gpus?.mapped).toEqual([
      {address: '0000:01:00.0', model: 'H100 PCIe', mapping: 'outpost-gpu-0000-01-00', status: 'created', driver: 'vfio-pci', iommugroup: 12},
      {address: '0000:41:00.0', model: 'RTX A6000', mapping: 'outpost-gpu-0000-41-00', status: 'created', driver: 'nvidia', iommugroup: 40},
    ])
    expect(result.gpus?.notes).toEqual([expect.stringMatching(/^0000:41:00\.0 is bound to nvidia: PVE rebinds it to vfio-pci .*options vfio-pci ids=10de:2230/)])
    expect(host.state().mappings).toEqual({
      'outpost-gpu-0000-01-00': {id: 'outpost-gpu-0000-01-00', map: ['node=pve,path=0000:01:00.0,id=10de:2331,iommugroup=12,subsystem-id=10de:1626'], description: 'H100 PCIe (outpost)'},
      // The A6000 has an audio function: the whole device is mapped.
      'outpost-gpu-0000-41-00': {id: 'outpost-gpu-0000-41-00', map: ['node=pve,path=0000:41:00,id=10de:2230,iommugroup=40,subsystem-id=10de:1459'], description: 'RTX A6000 (outpost)'},
    })
    expect(host.state().roles.OutpostAgent?.split(',')).toEqual(expect.arrayContaining(['Mapping.Use', 'VM.Config.HWType']))
    const config = readFileSync(join(dir, 'outpost.toml'), 'utf8')
    expect(config).toContain('passthrough = [{mapping = "outpost-gpu-0000-01-00", model = "H100 PCIe", pcie = true}, {mapping = "outpost-gpu-0000-41-00", model = "RTX A6000", pcie = true}]')

    // The API is the same cluster: the mappings the wizard made are the ones the agent's token sees.
    for (const mapping of Object.values(host.state().mappings ?? {})) emulator.pci.mappings.set(mapping.id, mapping)
    const doctor = parseJson<{checks: {name: string; status: string; message: string}[]}>(await runCli(['doctor', '--json'], {env: env(dir)}))
    expect(doctor.checks.find((check) => check.name === 'gpu')).toMatchObject({status: 'pass', message: 'passed through to VMs: mapping outpost-gpu-0000-01-00 (H100 PCIe), mapping outpost-gpu-0000-41-00 (RTX A6000)'})
    expect(doctor.checks.find((check) => check.name === 'provisioner')?.message).toContain('2 GPUs mapped on pve')

    const again = parseJson<SetupJson>(await runCli(flags('all'), {env: env(dir)}))
    expect(again.gpus?.mapped.map((gpu) => gpu.status)).toEqual(['unchanged', 'unchanged'])
    expect(again.config.status).toBe('unchanged')
  })

  it('refuses an address that is not one of the host GPUs, and a host whose IOMMU is off', async () => {
    const dir = tempConfigDir('outpost-setup-gpu-')
    const unknown = await runCli(flags('0000:99:00.0'), {env: env(dir)})
    expect(unknown.exitCode).toBe(2)
    expect(parseJson<{error: {message: string}}>(unknown).error.message).toBe('--gpus names 0000:99:00.0, which is not an NVIDIA GPU of this host (it has: 0000:01:00.0, 0000:41:00.0)')

    host.configure({node: 'pve', tokenSecret: TOKEN_SECRET, pci: [{...H100, iommugroup: -1}]})
    const off = await runCli(flags('01:00.0'), {env: env(dir)})
    expect(off.exitCode).not.toBe(0)
    expect(parseJson<{error: {code: string; suggestion: string}}>(off).error).toMatchObject({code: 'iommu_off', suggestion: expect.stringContaining('intel_iommu=on')})
  })
})
