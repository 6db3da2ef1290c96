import {z} from 'zod'

/**
 * The parts of Hetzner Cloud API answers that the provisioner reads (https://docs.hetzner.cloud). Objects are loose:
 * the API adds fields without a new version.
 */

export const ErrorEnvelope = z.object({
  error: z.looseObject({code: z.string(), message: z.string(), details: z.unknown().optional()}),
})

const Price = z.looseObject({net: z.string(), gross: z.string()})

export const ServerType = z.looseObject({
  id: z.number().int(),
  name: z.string(),
  cores: z.number().int(),
  /** GB, a float (0.5 for the smallest types of old). */
  memory: z.number(),
  disk: z.number(),
  architecture: z.string(),
  deprecated: z.boolean().nullish(),
  deprecation: z.looseObject({unavailable_after: z.string()}).nullish(),
  prices: z.array(z.looseObject({location: z.string(), price_hourly: Price})),
  /** Newer answers list where the type is offered and whether it is being phased out there. */
  locations: z.array(z.looseObject({name: z.string(), deprecation: z.unknown().nullish()})).optional(),
})
export type ServerType = z.infer<typeof ServerType>
export const ServerTypePage = z.looseObject({server_types: z.array(ServerType)})

export const Location = z.looseObject({id: z.number().int(), name: z.string(), network_zone: z.string()})
export type Location = z.infer<typeof Location>
export const LocationPage = z.looseObject({locations: z.array(Location)})

export const SshKey = z.looseObject({
  id: z.number().int(),
  name: z.string(),
  fingerprint: z.string(),
  labels: z.record(z.string(), z.string()).optional(),
})
export type SshKey = z.infer<typeof SshKey>
export const SshKeyAnswer = z.looseObject({ssh_key: SshKey})
export const SshKeyPage = z.looseObject({ssh_keys: z.array(SshKey)})

export const Action = z.looseObject({
  id: z.number().int(),
  command: z.string(),
  status: z.enum(['running', 'success', 'error']),
  error: z.looseObject({code: z.string(), message: z.string()}).nullish(),
})
export type Action = z.infer<typeof Action>
export const ActionAnswer = z.looseObject({action: Action})

export const Server = z.looseObject({
  id: z.number().int(),
  name: z.string(),
  status: z.string(),
  created: z.string(),
  labels: z.record(z.string(), z.string()),
  public_net: z.looseObject({
    ipv4: z.looseObject({ip: z.string()}).nullish(),
    ipv6: z.looseObject({ip: z.string()}).nullish(),
  }),
  server_type: z.looseObject({name: z.string()}),
  datacenter: z.looseObject({name: z.string(), location: z.looseObject({name: z.string()})}),
})
export type Server = z.infer<typeof Server>
export const ServerAnswer = z.looseObject({server: Server})
export const ServerPage = z.looseObject({servers: z.array(Server)})
export const ServerCreated = z.looseObject({server: Server, action: Action, root_password: z.string().nullish()})

const ImageSummary = z.looseObject({id: z.number().int(), name: z.string().nullish(), architecture: z.string().optional()})
export const ImagePage = z.looseObject({images: z.array(ImageSummary)})
/** GET /images/{id}. */
export const ImageAnswer = z.looseObject({image: ImageSummary})
