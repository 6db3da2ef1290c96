import {z} from 'zod'

/**
 * The parts of the Docker Engine API's answers that the provisioner reads (shapes from the Engine API reference,
 * v1.41 and later). Objects are loose: the engine adds fields between releases; null stands where Go has a nil.
 */

const Labels = z.record(z.string(), z.string()).nullish().transform((labels) => labels ?? {})

export const ContainerSummary = z.looseObject({
  Id: z.string(),
  Names: z.array(z.string()).nullish().transform((names) => names ?? []),
  State: z.string(),
  Labels,
})
export type ContainerSummary = z.infer<typeof ContainerSummary>
export const ContainerList = z.array(ContainerSummary)

const PortBinding = z.looseObject({HostIp: z.string(), HostPort: z.string()})

export const ContainerInspect = z.looseObject({
  Id: z.string(),
  Name: z.string(),
  State: z.looseObject({
    Status: z.string(),
    Running: z.boolean(),
    ExitCode: z.number().int(),
    Error: z.string().optional(),
    OOMKilled: z.boolean().optional(),
    StartedAt: z.string(),
    Health: z.looseObject({Status: z.string()}).nullish(),
  }),
  Config: z.looseObject({
    Env: z.array(z.string()).nullish().transform((env) => env ?? []),
    Labels,
  }),
  NetworkSettings: z.looseObject({
    Ports: z.record(z.string(), z.array(PortBinding).nullable()).nullish().transform((ports) => ports ?? {}),
  }),
})
export type ContainerInspect = z.infer<typeof ContainerInspect>

export const ContainerCreated = z.looseObject({Id: z.string(), Warnings: z.array(z.string()).nullish()})

export const EngineInfo = z.looseObject({
  NCPU: z.number().int(),
  MemTotal: z.number(),
  DockerRootDir: z.string(),
  ServerVersion: z.string(),
  /** The runtimes the engine knows (`nvidia` once the NVIDIA Container Toolkit configured it). */
  Runtimes: z.record(z.string(), z.unknown()).nullish(),
})

export const ImageInspect = z.looseObject({Id: z.string()})

export const NetworkSummary = z.looseObject({Id: z.string(), Name: z.string(), Labels})
export type NetworkSummary = z.infer<typeof NetworkSummary>
export const NetworkList = z.array(NetworkSummary)
export const NetworkCreated = z.looseObject({Id: z.string()})
