import {arch, availableParallelism, cpus, release, totalmem, type} from 'node:os'

/** What the report says the machine is: facts the OS states, nothing that identifies the host. */
export interface MachineDescription {
  cpu_model: string
  cpu_threads: number
  memory_mib: number
  os: string
  arch: string
  node: string
}

export function describeMachine(): MachineDescription {
  return {
    cpu_model: cpus()[0]?.model.trim() ?? 'unknown',
    cpu_threads: availableParallelism(),
    memory_mib: Math.round(totalmem() / 2 ** 20),
    os: `${type()} ${release()}`,
    arch: arch(),
    node: process.version,
  }
}
