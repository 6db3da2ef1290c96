import {GpuSection, ProxmoxProvisionerSection} from '../../src/core/config/schema.js'
import {backends} from '../../src/provisioners/index.js'
import {ProxmoxProvisioner} from '../../src/provisioners/proxmox/proxmox-provisioner.js'
import {ProxmoxEmulator} from '../../test/emulators/proxmox/emulator.js'
import {contractFixture} from '../../test/provisioners/contract-suite.js'
import type {BenchSection} from './types.js'

const RUNS = 3
/** What the emulated host itself takes: clone 2 s, start 1 s, the guest agent's address 3 s after start. */
const BACKEND_MS = 6000

/** Time-to-ready of the Proxmox provisioner against the emulator with realistic task times (issue 5's target: within 10%). */
export const proxmoxBench: BenchSection = async () => {
  const emulator = new ProxmoxEmulator({durations: {clone: 2000, start: 1000, resize: 50, stop: 100, destroy: 100}, agentDelayMs: 3000})
  await emulator.start()
  const provisioner = new ProxmoxProvisioner(
    backends.proxmox.fromConfig(
      ProxmoxProvisionerSection.parse({
        host: '127.0.0.1',
        port: emulator.port,
        token_id: emulator.tokenId,
        token_secret: emulator.tokenSecret,
        tls_fingerprint: emulator.fingerprint,
        template_vmid: 9000,
        node: 'pve',
        shutdown_timeout_seconds: 0,
      }),
      {configPath: 'outpost.toml', stateDir: 'state', largestOfferingDiskGb: 0, gpu: GpuSection.parse({})},
    ),
  )
  try {
    // A running agent's connection is warm before its first contract.
    await provisioner.verifySetup()
    const times: number[] = []
    for (let run = 0; run < RUNS; run++) {
      const started = performance.now()
      const instance = await provisioner.provision(contractFixture({storage_gb: 10}), new AbortController().signal)
      times.push(performance.now() - started)
      await provisioner.terminate(instance)
    }
    const median = [...times].sort((a, b) => a - b)[Math.floor(RUNS / 2)] ?? 0
    return [
      {group: 'proxmox', name: 'time to ready (emulated host), median', value: Math.round(median), unit: 'ms', ratio: median / BACKEND_MS, note: `${BACKEND_MS} ms of backend work; target ≤ 1.10 ×`},
      {group: 'proxmox', name: 'time to ready, worst of runs', value: Math.round(Math.max(...times)), unit: 'ms', ratio: Math.max(...times) / BACKEND_MS},
    ]
  } finally {
    await provisioner.close()
    await emulator.stop()
  }
}
