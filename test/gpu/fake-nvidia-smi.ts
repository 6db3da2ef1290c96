import {fileURLToPath} from 'node:url'

/** The fake nvidia-smi of test/fixtures (see its header for the machines it plays). */
export const FAKE_NVIDIA_SMI = fileURLToPath(new URL('../fixtures/nvidia-smi/nvidia-smi', import.meta.url))

export type FakeMachine = 'one' | 'eight' | 'mig' | 'old' | 'none' | 'unloaded' | 'mismatch'

/** Runs `body` with the fake playing `machine` (the variable reaches every nvidia-smi the code under test starts). */
export async function asMachine<T>(machine: FakeMachine, body: () => Promise<T>): Promise<T> {
  const before = process.env.FAKE_NVIDIA_SMI
  process.env.FAKE_NVIDIA_SMI = machine
  try {
    return await body()
  } finally {
    if (before === undefined) delete process.env.FAKE_NVIDIA_SMI
    else process.env.FAKE_NVIDIA_SMI = before
  }
}
