import {chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {benchmarkGpus, findNvcc, MEASUREMENT_METHOD} from '../../src/bench/gpu.js'
import {asMachine, FAKE_NVIDIA_SMI} from '../gpu/fake-nvidia-smi.js'

/**
 * `benchmark run --type gpu` on a machine without a GPU: what the fake nvidia-smi reports, and the measurement's
 * plumbing through a stand-in for nvcc (no CUDA toolkit can be installed here). The stand-in checks the arguments it
 * gets, keeps the source it was given, and "builds" a program that answers as gpu-bench.cu does, naming the GPU it
 * was pointed at. The CUDA program itself runs only where a GPU is: scripts/gpu-check.sh.
 */

const dir = mkdtempSync(join(tmpdir(), 'outpost-gpu-bench-test-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

function fakeNvcc(program: string): string {
  const path = join(dir, `nvcc-${Math.random().toString(16).slice(2)}`)
  writeFileSync(
    path,
    `#!/bin/sh
# nvcc -O3 [-arch=native] -o <binary> <source.cu>
[ "$1" = "-O3" ] || { echo "unexpected arguments: $*" >&2; exit 2; }
while [ "$1" != "-o" ]; do shift; done
cp "$3" ${dir}/compiled.cu
cat > "$2" <<'PROGRAM'
${program}
PROGRAM
chmod +x "$2"
`,
  )
  chmodSync(path, 0o755)
  return path
}

const MEASURING = `#!/bin/sh
[ "$#" = 3 ] || { echo '{"error": "usage"}'; exit 2; }
echo '{"device_name": "'"$CUDA_VISIBLE_DEVICES"'", "copy_bytes": '$(($1 * 1048576 * $3))', "copy_seconds": 0.5, "copy_gib_per_second": 1200.5, "matmul_n": '$2', "repeats": '$3', "matmul_seconds": 0.25, "matmul_gflops": 19000.25, "matmul_max_relative_error": 1.2e-06}'`

describe('benchmark --type gpu', () => {
  it('without a driver, or with a failing one, no GPU is reported and the note says why', async () => {
    expect(await benchmarkGpus({nvidiaSmi: '/nonexistent/nvidia-smi', quick: true})).toEqual({gpus: [], note: 'no NVIDIA GPU: /nonexistent/nvidia-smi is not installed (no NVIDIA driver)'})
    const failing = await asMachine('unloaded', () => benchmarkGpus({nvidiaSmi: FAKE_NVIDIA_SMI, quick: true}))
    expect(failing.gpus).toEqual([])
    expect(failing.note).toMatch(/^GPUs unknown: nvidia-smi failed: NVIDIA-SMI has failed/)
  })

  it('with a GPU and no nvcc: what nvidia-smi reports, and no measurement', async () => {
    const run = await asMachine('one', () => benchmarkGpus({nvidiaSmi: FAKE_NVIDIA_SMI, nvcc: false, quick: true}))
    expect(run).toEqual({
      gpus: [{index: 0, uuid: 'GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a70', name: 'NVIDIA H100 80GB HBM3', memory_mib: 81559, driver_version: '550.54.15', compute_capability: '9.0'}],
      note: 'not measured: nvcc (the CUDA toolkit) is not installed; install it to measure copy rate and matrix multiply',
    })
  })

  it.skipIf(findNvcc() === undefined)('with the CUDA toolkit and no GPU (this machine): the shipped program builds with nvcc, and its run fails with CUDA\'s own error', async () => {
    const run = await asMachine('one', () => benchmarkGpus({nvidiaSmi: FAKE_NVIDIA_SMI, quick: true}))
    expect(run.gpus).toHaveLength(1)
    expect(run.measured).toBeUndefined()
    expect(run.note).toMatch(/^not measured: the GPU benchmark failed on GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a70: \{"error": "cudaGetDeviceProperties\(&prop, 0\): /)
  })

  it('with nvcc: the shipped CUDA source is built and run once per GPU, pointed at it by UUID; MIG GPUs are left out', async () => {
    const run = await asMachine('mig', () => benchmarkGpus({nvidiaSmi: FAKE_NVIDIA_SMI, nvcc: fakeNvcc(MEASURING), quick: true}))
    expect(readFileSync(join(dir, 'compiled.cu'), 'utf8')).toContain('__global__ void matmul')
    expect(run.method).toBe(MEASUREMENT_METHOD)
    expect(run.note).toBe('GPU 0 not measured: MIG mode is on')
    expect(run.measured).toEqual([
      {
        index: 1,
        uuid: 'GPU-5d5ba0d7-d33d-2b2c-524d-9e3d8d2b8a71',
        device_name: 'GPU-5d5ba0d7-d33d-2b2c-524d-9e3d8d2b8a71',
        copy_bytes: 64 * 1048576 * 3,
        copy_seconds: 0.5,
        copy_gib_per_second: 1200.5,
        matmul_n: 512,
        repeats: 3,
        matmul_seconds: 0.25,
        matmul_gflops: 19000.25,
        matmul_max_relative_error: 1.2e-6,
      },
    ])
  })

  it('a program that fails on the GPU, or answers something else, leaves what nvidia-smi reports with the reason', async () => {
    const cudaError = await asMachine('one', () => benchmarkGpus({nvidiaSmi: FAKE_NVIDIA_SMI, nvcc: fakeNvcc(`#!/bin/sh\necho '{"error": "cudaMalloc(&source, copy_bytes): out of memory"}'\nexit 1`), quick: true}))
    expect(cudaError.gpus).toHaveLength(1)
    expect(cudaError.measured).toBeUndefined()
    expect(cudaError.note).toContain('out of memory')
    const garbled = await asMachine('one', () => benchmarkGpus({nvidiaSmi: FAKE_NVIDIA_SMI, nvcc: fakeNvcc(`#!/bin/sh\necho '{"device_name": "x"}'`), quick: true}))
    expect(garbled.note).toMatch(/^not measured: the GPU benchmark printed/)
  })
})
