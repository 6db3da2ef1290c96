import {z} from 'zod'

/**
 * The parts of Proxmox VE's answers that the provisioner reads (shapes from the PVE API viewer, as typed by
 * proxmox-api's model). Objects are loose: Proxmox adds fields between releases.
 */

/** Proxmox encodes booleans as 0/1 and, in some answers, numbers as strings. */
const flag = z.union([z.boolean(), z.literal(0), z.literal(1)]).transform((value) => value === true || value === 1)
const count = z.union([z.number(), z.string().regex(/^\d+(\.\d+)?$/)]).transform(Number)

export const ClusterResource = z.looseObject({
  id: z.string(),
  type: z.string(),
  node: z.string().optional(),
  status: z.string().optional(),
  name: z.string().optional(),
  vmid: z.number().int().optional(),
  template: flag.optional(),
  tags: z.string().optional(),
  lock: z.string().optional(),
  storage: z.string().optional(),
  shared: flag.optional(),
  maxmem: count.optional(),
  mem: count.optional(),
  maxcpu: count.optional(),
  maxdisk: count.optional(),
  disk: count.optional(),
  uptime: count.optional(),
})
export type ClusterResource = z.infer<typeof ClusterResource>
export const ClusterResources = z.array(ClusterResource)

/** GET /cluster/nextid answers the VMID as a string. */
export const NextId = count.pipe(z.number().int().min(100))

export const TaskStatus = z.looseObject({
  upid: z.string(),
  node: z.string(),
  type: z.string(),
  status: z.enum(['running', 'stopped']),
  /** "OK", "WARNINGS: n", or the error the task died of. */
  exitstatus: z.string().optional(),
})

export const TaskLog = z.array(z.looseObject({n: z.number().int(), t: z.string()}))

export const VmConfig = z.looseObject({
  name: z.string().optional(),
  tags: z.string().optional(),
  lock: z.string().optional(),
  template: flag.optional(),
  ipconfig0: z.string().optional(),
  digest: z.string().optional(),
})
export type VmConfig = z.infer<typeof VmConfig>

/** `GET /cluster/mapping/pci?check-node=<node>` (pve-manager API2/Cluster/Mapping/PCI.pm index): `checks` with check-node. */
export const PciMappingList = z.array(
  z.looseObject({
    id: z.string(),
    map: z.array(z.string()).nullish(),
    checks: z.array(z.looseObject({severity: z.string(), message: z.string()})).nullish(),
  }),
)

export const VmStatus = z.looseObject({
  vmid: count,
  status: z.string(),
  name: z.string().optional(),
  uptime: count.optional(),
  qmpstatus: z.string().optional(),
  lock: z.string().optional(),
})

const GuestAddress = z.looseObject({
  'ip-address': z.string(),
  'ip-address-type': z.enum(['ipv4', 'ipv6']),
  prefix: z.number().int(),
})

/** The guest agent's `network-get-interfaces`, wrapped in `result` as QEMU returns it. */
export const GuestInterfaces = z.looseObject({
  result: z.array(
    z.looseObject({
      name: z.string(),
      'hardware-address': z.string().optional(),
      'ip-addresses': z.array(GuestAddress).optional(),
    }),
  ),
})
export type GuestInterfaces = z.infer<typeof GuestInterfaces>

export const NodeStatus = z.looseObject({
  memory: z.looseObject({total: count, used: count, free: count}),
  cpuinfo: z.looseObject({cpus: count}),
})

export const NodeStorage = z.array(
  z.looseObject({
    storage: z.string(),
    type: z.string(),
    content: z.string().optional(),
    active: flag.optional(),
    enabled: flag.optional(),
    shared: flag.optional(),
    total: count.optional(),
    used: count.optional(),
    avail: count.optional(),
  }),
)

export const Version = z.looseObject({version: z.string(), release: z.string().optional()})

/** The guest agent's ping answers `{result: {}}`; only that it answered matters. */
export const AgentPing = z.unknown()

/** Answers that are a task id (PVE 8) or null (older releases that did the work synchronously). */
export const MaybeUpid = z.string().nullable().optional()
