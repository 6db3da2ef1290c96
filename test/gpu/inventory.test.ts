import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {GpuSection} from '../../src/core/config/schema.js'
import {checkContainerRuntime, findNvidiaHook, NVIDIA_HOOK} from '../../src/gpu/container-runtime.js'
import {localGpuUnits} from '../../src/gpu/devices.js'
import {describeInventory, readGpuInventory} from '../../src/gpu/inventory.js'
import {readNvidiaSmiMetrics, parseDcgmMetrics} from '../../src/gpu/metrics.js'
import {parseGpuList, parseInventory} from '../../src/gpu/nvidia-smi.js'
import {asMachine, FAKE_NVIDIA_SMI} from './fake-nvidia-smi.js'

const config = (values: Record<string, unknown> = {}) => GpuSection.parse(values)

describe('the GPU inventory reads nvidia-smi in its real formats', () => {
  it('one GPU: index, UUID, name, memory, compute capability, driver, MIG mode', async () => {
    const inventory = await asMachine('one', () => readGpuInventory(FAKE_NVIDIA_SMI))
    expect(inventory).toEqual({
      state: 'ready',
      driverVersion: '550.54.15',
      notes: [],
      gpus: [
        {
          index: 0,
          uuid: 'GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a70',
          name: 'NVIDIA H100 80GB HBM3',
          memoryMib: 81559,
          computeCapability: '9.0',
          driverVersion: '550.54.15',
          migMode: 'disabled',
          migDevices: [],
        },
      ],
    })
    expect(describeInventory(inventory)).toBe('1 × NVIDIA H100 80GB HBM3 (81559 MiB), driver 550.54.15')
  })

  it('eight GPUs, each its own device, in index order', async () => {
    const inventory = await asMachine('eight', () => readGpuInventory(FAKE_NVIDIA_SMI))
    expect(inventory.state).toBe('ready')
    if (inventory.state !== 'ready') return
    expect(inventory.gpus.map((gpu) => gpu.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    expect(new Set(inventory.gpus.map((gpu) => gpu.uuid)).size).toBe(8)
    const {units, notes} = localGpuUnits(inventory, config())
    expect(units).toHaveLength(8)
    expect(notes).toEqual([])
    expect(describeInventory(inventory)).toBe('8 × NVIDIA A100-SXM4-80GB (81920 MiB), driver 535.183.01')
  })

  it('MIG: the MIG devices of a GPU with MIG on come from nvidia-smi -L, and are handed out only with mig = true', async () => {
    const inventory = await asMachine('mig', () => readGpuInventory(FAKE_NVIDIA_SMI))
    expect(inventory.state).toBe('ready')
    if (inventory.state !== 'ready') return
    expect(inventory.gpus[0]!.migMode).toBe('enabled')
    expect(inventory.gpus[0]!.migDevices.map((device) => device.profile)).toEqual(['3g.40gb', '2g.20gb', '1g.10gb'])
    expect(inventory.gpus[1]!.migDevices).toEqual([])

    const whole = localGpuUnits(inventory, config())
    expect(whole.units.map((unit) => unit.label)).toEqual(['1'])
    expect(whole.notes[0]).toMatch(/GPU 0 has MIG mode on and is not handed out: set \[gpu\] mig = true/)

    const mig = localGpuUnits(inventory, config({mig: true, models: {'NVIDIA A100-SXM4-80GB MIG 1g.10gb': 'a100-1g.10gb'}}))
    expect(mig.units.map((unit) => [unit.label, unit.model])).toEqual([
      ['0 MIG 0', 'NVIDIA A100-SXM4-80GB MIG 3g.40gb'],
      ['0 MIG 1', 'NVIDIA A100-SXM4-80GB MIG 2g.20gb'],
      ['0 MIG 2', 'a100-1g.10gb'],
      ['1', 'NVIDIA A100-SXM4-80GB'],
    ])
    expect(mig.units[0]!.id).toMatch(/^MIG-/)
    expect(mig.units[0]!.gpuUuid).toBe(inventory.gpus[0]!.uuid)
  })

  it('[gpu] devices picks GPUs by index or UUID, and names what it does not find', async () => {
    const inventory = await asMachine('eight', () => readGpuInventory(FAKE_NVIDIA_SMI))
    if (inventory.state !== 'ready') throw new Error('expected GPUs')
    const {units, notes} = localGpuUnits(inventory, config({devices: ['2', inventory.gpus[5]!.uuid.toLowerCase(), '9']}))
    expect(units.map((unit) => unit.label)).toEqual(['2', '5'])
    expect(notes).toEqual(['[gpu] devices names 9, which nvidia-smi does not list'])
  })

  it('a driver older than 510 is asked again without compute_cap and mig.mode.current', async () => {
    const inventory = await asMachine('old', () => readGpuInventory(FAKE_NVIDIA_SMI))
    expect(inventory.state).toBe('ready')
    if (inventory.state !== 'ready') return
    expect(inventory.gpus[0]).toMatchObject({name: 'Tesla T4', memoryMib: 15360, driverVersion: '470.82.01', migMode: 'unsupported'})
    expect(inventory.gpus[0]!.computeCapability).toBeUndefined()
  })

  it('no driver, no GPU, and a failing driver are states with the reason, never an exception', async () => {
    expect(await readGpuInventory('/nonexistent/nvidia-smi')).toEqual({state: 'none', reason: '/nonexistent/nvidia-smi is not installed (no NVIDIA driver)'})
    expect(await asMachine('none', () => readGpuInventory(FAKE_NVIDIA_SMI))).toEqual({state: 'none', reason: 'the NVIDIA driver found no GPU'})
    const unloaded = await asMachine('unloaded', () => readGpuInventory(FAKE_NVIDIA_SMI))
    expect(unloaded).toEqual({state: 'error', reason: expect.stringMatching(/^nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/)})
    const mismatch = await asMachine('mismatch', () => readGpuInventory(FAKE_NVIDIA_SMI))
    expect(mismatch).toEqual({state: 'error', reason: 'nvidia-smi failed: Failed to initialize NVML: Driver/library version mismatch NVML library version: 535.161'})
    expect(describeInventory(mismatch)).toMatch(/^GPUs unknown: /)
    expect(localGpuUnits(mismatch, config()).units).toEqual([])
  })

  it('an answer in a shape it does not know is unknown (error), not zero GPUs', () => {
    expect(() => parseInventory('0, GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a70, H100, 81559, 9.0\n')).toThrow(/printed 5 fields where 7/)
    expect(() => parseInventory('0, not-a-uuid, H100, 81559, 9.0, 550.54.15, Disabled\n')).toThrow(/uuid expected a GPU UUID/)
    expect(() => parseGpuList('something else\n')).toThrow(/neither a GPU nor one of its MIG devices/)
  })

  it('nvidia-smi -L of drivers before R470 names MIG devices MIG-GPU-<uuid>/<gi>/<ci>', () => {
    const listed = parseGpuList(
      'GPU 0: A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)\n  MIG 3g.20gb Device 0: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0)\n',
    )
    expect(listed.get('GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77')).toEqual([{profile: '3g.20gb', device: 0, uuid: 'MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0'}])
  })
})

describe('GPU metrics', () => {
  it('per GPU from nvidia-smi; what a GPU does not report (utilisation under MIG, power on a T4) is absent, not zero', async () => {
    const readings = await asMachine('mig', () => readNvidiaSmiMetrics(FAKE_NVIDIA_SMI, 15_000))
    expect(readings).toEqual([
      {index: 0, uuid: 'GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a70', utilizationPercent: undefined, memoryUsedMib: 3, temperatureCelsius: 34, powerWatts: 58.77},
      {index: 1, uuid: 'GPU-5d5ba0d7-d33d-2b2c-524d-9e3d8d2b8a71', utilizationPercent: 17, memoryUsedMib: 1027, temperatureCelsius: 35, powerWatts: 60.02},
    ])
    expect(await asMachine('none', () => readNvidiaSmiMetrics(FAKE_NVIDIA_SMI, 15_000))).toEqual([])
    await expect(asMachine('unloaded', () => readNvidiaSmiMetrics(FAKE_NVIDIA_SMI, 15_000))).rejects.toThrow(/nvidia-smi failed/)
  })

  it("from dcgm-exporter's exposition, per physical GPU (MIG series left out)", () => {
    const text = [
      '# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).',
      '# TYPE DCGM_FI_DEV_GPU_UTIL gauge',
      'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu1"} 37',
      'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu1"} 4096',
      'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52",device="nvidia0"} 41',
      'DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52",device="nvidia0"} 123.456',
      'DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e53",device="nvidia1",GPU_I_PROFILE="1g.10gb",GPU_I_ID="9"} 10',
      'DCGM_FI_DEV_SM_CLOCK{gpu="0",UUID="GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52"} 1980',
    ].join('\n')
    expect(parseDcgmMetrics(text)).toEqual([
      {index: 0, uuid: 'GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52', utilizationPercent: 37, memoryUsedMib: 4096, temperatureCelsius: 41, powerWatts: 123.456},
    ])
  })
})

describe('the NVIDIA container runtime check', () => {
  it('passes when the hook Docker looks for is installed, and otherwise names the error GPU containers would hit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-hook-'))
    try {
      writeFileSync(join(dir, NVIDIA_HOOK), '#!/bin/sh\n', {mode: 0o755})
      expect(findNvidiaHook(dir)).toBe(join(dir, NVIDIA_HOOK))
      expect(checkContainerRuntime(['runc', 'nvidia'], join(dir, NVIDIA_HOOK))).toEqual({ok: true, message: `GPU containers can start: ${join(dir, NVIDIA_HOOK)} is installed; the nvidia runtime is registered`})
      const missing = checkContainerRuntime(['runc'], undefined)
      expect(missing.ok).toBe(false)
      expect(missing.message).toContain('could not select device driver "" with capabilities: [[gpu]]')
      expect(missing.remedy).toContain('nvidia-ctk runtime configure --runtime=docker')
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})
