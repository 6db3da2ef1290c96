import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Registry} from 'prom-client'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'

import {watchGpuMetrics} from '../../src/agent/gpus.js'
import {GpuSection} from '../../src/core/config/schema.js'
import {readGpuInventory} from '../../src/gpu/inventory.js'
import {FAKE_NVIDIA_SMI} from '../gpu/fake-nvidia-smi.js'

/** The agent's GPU series, read from the fake nvidia-smi (or a dcgm-exporter answer) at scrape time. */

let before: string | undefined
beforeEach(() => {
  before = process.env.FAKE_NVIDIA_SMI
})
afterEach(() => {
  if (before === undefined) delete process.env.FAKE_NVIDIA_SMI
  else process.env.FAKE_NVIDIA_SMI = before
})

const series = (text: string, name: string) => text.split('\n').filter((line) => line.startsWith(`${name}{`))

/** promtool, when installed, must accept the exposition. */
function promtoolAccepts(text: string): void {
  try {
    execFileSync('promtool', ['--version'], {stdio: 'ignore'})
  } catch {
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'outpost-gpu-metrics-'))
  try {
    writeFileSync(join(dir, 'metrics.txt'), text)
    execFileSync('sh', ['-c', `promtool check metrics < ${join(dir, 'metrics.txt')}`], {stdio: 'pipe'})
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

describe('GPU metrics of the agent', () => {
  it('per GPU, labelled with the contract or job holding it (a MIG device counts for its GPU), nothing a GPU does not report', async () => {
    process.env.FAKE_NVIDIA_SMI = 'mig'
    const inventory = await readGpuInventory(FAKE_NVIDIA_SMI)
    if (inventory.state !== 'ready') throw new Error('expected GPUs')
    const [gpu0, gpu1] = inventory.gpus
    const holders = new Map([
      [gpu0!.migDevices[0]!.uuid, 'contract:c1'],
      [gpu0!.migDevices[2]!.uuid, 'job:j7'],
      [gpu1!.uuid, 'contract:c2'],
    ])
    const registry = new Registry()
    expect(await watchGpuMetrics(registry, GpuSection.parse({nvidia_smi: FAKE_NVIDIA_SMI, mig: true}), () => holders)).toBe(true)
    const text = await registry.metrics()
    expect(series(text, 'outpost_agent_gpu_power_watts')).toEqual([
      `outpost_agent_gpu_power_watts{gpu="0",uuid="${gpu0!.uuid}",contract_id="c1",job_id="j7"} 58.77`,
      `outpost_agent_gpu_power_watts{gpu="1",uuid="${gpu1!.uuid}",contract_id="c2",job_id=""} 60.02`,
    ])
    // With MIG on, the driver gives no utilisation for the GPU itself: no series, rather than a zero.
    expect(series(text, 'outpost_agent_gpu_utilization_percent')).toEqual([`outpost_agent_gpu_utilization_percent{gpu="1",uuid="${gpu1!.uuid}",contract_id="c2",job_id=""} 17`])
    expect(series(text, 'outpost_agent_gpu_memory_used_bytes')[1]).toBe(`outpost_agent_gpu_memory_used_bytes{gpu="1",uuid="${gpu1!.uuid}",contract_id="c2",job_id=""} ${1027 * 1024 * 1024}`)
    expect(series(text, 'outpost_agent_gpu_temperature_celsius')).toHaveLength(2)
    promtoolAccepts(text)

    // A driver that fails later: the scrape goes on without GPU series and counts the failure.
    process.env.FAKE_NVIDIA_SMI = 'unloaded'
    const failed = await registry.metrics()
    expect(series(failed, 'outpost_agent_gpu_power_watts')).toEqual([])
    expect(failed).toContain('outpost_agent_gpu_read_errors_total 1')
  })

  it('from dcgm-exporter when [gpu] dcgm_url names one', async () => {
    process.env.FAKE_NVIDIA_SMI = 'one'
    const inventory = await readGpuInventory(FAKE_NVIDIA_SMI)
    if (inventory.state !== 'ready') throw new Error('expected a GPU')
    const uuid = inventory.gpus[0]!.uuid
    const exporter = createServer((request, response) =>
      response.end(`DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="${uuid}",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="h"} 91\nDCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="${uuid}",device="nvidia0"} 512.5\n`),
    )
    await new Promise<void>((resolve) => exporter.listen(0, '127.0.0.1', resolve))
    try {
      const url = `http://127.0.0.1:${(exporter.address() as AddressInfo).port}/metrics`
      const registry = new Registry()
      await watchGpuMetrics(registry, GpuSection.parse({nvidia_smi: FAKE_NVIDIA_SMI, dcgm_url: url}), () => new Map([[uuid, 'job:j1']]))
      const text = await registry.metrics()
      expect(series(text, 'outpost_agent_gpu_utilization_percent')).toEqual([`outpost_agent_gpu_utilization_percent{gpu="0",uuid="${uuid}",contract_id="",job_id="j1"} 91`])
      expect(series(text, 'outpost_agent_gpu_power_watts')).toEqual([`outpost_agent_gpu_power_watts{gpu="0",uuid="${uuid}",contract_id="",job_id="j1"} 512.5`])
      expect(series(text, 'outpost_agent_gpu_temperature_celsius')).toEqual([])
    } finally {
      await new Promise((resolve) => exporter.close(resolve))
    }
  })

  it('a host without a GPU exports no GPU series', async () => {
    const registry = new Registry()
    expect(await watchGpuMetrics(registry, GpuSection.parse({nvidia_smi: '/nonexistent/nvidia-smi'}), () => new Map())).toBe(false)
    expect(await registry.metrics()).not.toContain('outpost_agent_gpu')
  })
})
