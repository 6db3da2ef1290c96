import {z} from 'zod'

import {isAmount} from '../decimal.js'

/**
 * The one description of outpost.toml. Every section is strict (an unknown key is an error, with a suggestion),
 * and every default lives here, so the README's config reference is generated from this file.
 */

const seconds = (fallback: number, min = 1, max = 86_400) => z.number().int().min(min).max(max).default(fallback)
const hexKey = z.string().regex(/^[0-9a-f]{64}$/, 'expected a 64-character lowercase hex public key')

export const PRODUCT_TYPES = ['compute', 'gpu', 'dedicated', 'container'] as const

export const MarketplaceSection = z.strictObject({
  endpoint: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}).describe('Marketplace API base URL (without /api/v1)'),
  provider_pubkey: hexKey.optional().describe('The provider main public key; set by `outpost register`'),
  request_timeout_seconds: seconds(30, 1, 300).describe('Timeout of one API request'),
})

export const ProviderSection = z.strictObject({
  name: z.string().min(1).max(128).describe('Provider name shown to renters; published by `outpost register`'),
  contact_email: z.email({error: 'expected an email address'}).describe('Where the marketplace and renters reach you'),
  website: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}).optional().describe('Your website'),
  regions: z.array(z.string().min(1).max(64)).default([]).describe('Regions you serve, like ["eu-central"]'),
})

export const AgentSection = z.strictObject({
  key_file: z.string().min(1).default('agent.key').describe('Agent key file, relative to this config file'),
  state_dir: z.string().min(1).default('state').describe('Journal, outbox and pid files, relative to this config file'),
  heartbeat_seconds: seconds(60, 5, 3600).describe('Heartbeat interval when the server names none'),
  long_poll_wait_seconds: seconds(25, 0, 30).describe('How long the server may hold a pending-contract request (0 turns long poll off)'),
  poll_interval_seconds: seconds(30, 1, 3600).describe('Polling interval when long poll fails'),
  health_check_interval_seconds: seconds(60, 1, 3600).describe('Interval between batched health reports'),
  usage_interval_seconds: seconds(300, 1, 86_400).describe('Interval between signed usage reports'),
  reconcile_interval_seconds: seconds(600, 10, 86_400).describe('Interval between reconciliations with the marketplace'),
  active_sync_seconds: seconds(15, 1, 3600).describe('Interval between reads of the active contracts, to terminate the cancelled and expired'),
  max_concurrent_provisions: z.number().int().min(1).max(256).default(4).describe('Contracts provisioned at once'),
  lock_ttl_seconds: seconds(900, 30, 3600).describe('Contract lock TTL; longer than the provisioner worst case'),
})

export const LocalProvisionerSection = z.strictObject({
  command: z.array(z.string().min(1)).min(1).optional().describe('Workload command; it gets PORT in its environment (default: a built-in banner service)'),
  startup_timeout_seconds: seconds(10, 1, 600).describe('Time for the workload to accept TCP connections'),
})

const ipv4 = z.ipv4({error: 'expected an IPv4 address, like 192.0.2.10'})

export const ProxmoxIpPoolSection = z.strictObject({
  first: ipv4.describe('First address handed out'),
  last: ipv4.describe('Last address handed out'),
  prefix_length: z.number().int().min(1).max(32).describe('Network prefix length, like 24'),
  gateway: ipv4.describe('Default gateway of the VMs'),
})

export const ProxmoxProvisionerSection = z.strictObject({
  host: z
    .string()
    .regex(/^[^\s:/]+$/, 'expected a host name or IPv4 address without scheme or port')
    .describe('Proxmox VE host (name or address, no scheme, no port)'),
  port: z.number().int().min(1).max(65_535).default(8006).describe('Proxmox VE API port'),
  token_id: z
    .string()
    .regex(/^[^\s@!]+@[^\s@!]+![A-Za-z][A-Za-z0-9._-]*$/, 'expected USER@REALM!TOKENID, like outpost@pve!agent')
    .describe('API token id, USER@REALM!TOKENID'),
  token_secret: z
    .string()
    .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'expected the token secret, a lowercase UUID')
    .describe('API token secret (a UUID); prefer OUTPOST_PROVISIONER_PROXMOX_TOKEN_SECRET'),
  tls_fingerprint: z
    .string()
    .regex(/^(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{64}$/, 'expected a SHA-256 fingerprint, 32 hex bytes like AB:CD:...')
    .optional()
    .describe('SHA-256 fingerprint of a self-signed host certificate to pin; without it the certificate must verify'),
  node: z.string().min(1).default('auto').describe('Node that runs the VMs; auto: the node with most free memory that has the storage'),
  template_vmid: z.number().int().min(100).max(999_999_999).describe('VMID of the cloud-init template to clone'),
  clone: z.enum(['linked', 'full']).default('linked').describe('linked: fast, shares the template disk; full: an independent copy'),
  storage: z.string().min(1).optional().describe("Target storage of full clones (default: the template's storage)"),
  pool: z.string().min(1).optional().describe('Proxmox resource pool for the VMs'),
  disk: z.string().regex(/^(?:scsi|virtio|sata|ide)\d+$/, 'expected a disk key like scsi0').default('scsi0').describe('Disk grown to the offering storage'),
  ciuser: z.string().min(1).default('outpost').describe('Cloud-init user created in the VM (depends on the template)'),
  ssh_port: z.number().int().min(1).max(65_535).default(22).describe('SSH port of the VMs'),
  ip_pool: ProxmoxIpPoolSection.optional().describe('Static addresses for the VMs (default: DHCP)'),
  task_timeout_seconds: seconds(600, 1, 7200).describe('Longest a Proxmox task (clone, start, destroy) may run'),
  address_timeout_seconds: seconds(300, 1, 3600).describe("Longest wait for the guest agent to report the VM's address"),
  shutdown_timeout_seconds: seconds(30, 0, 600).describe('Graceful shutdown time before a forced stop on terminate (0: stop at once)'),
  request_timeout_seconds: seconds(30, 1, 300).describe('Timeout of one API request'),
  keep_failed: z.boolean().default(false).describe('Keep the VM of a failed provisioning for inspection instead of destroying it'),
})

export const ScriptProvisionerSection = z.strictObject({
  command: z.string().min(1).describe('Executable called as `<command> <action>` with JSON on stdin; relative to this config file'),
  provision_timeout_seconds: seconds(900, 1, 7200).describe('Longest a provision action may run'),
  action_timeout_seconds: seconds(60, 1, 3600).describe('Longest any other action may run'),
})

export const ManualProvisionerSection = z.strictObject({
  webhook_url: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}).optional().describe('Posted a JSON notice for each request'),
  poll_interval_seconds: seconds(2, 1, 300).describe('How often a waiting provision looks for the operator answer'),
})

export const ProvisionerSection = z
  .strictObject({
    type: z.enum(['local', 'proxmox', 'script', 'manual']).describe('Backend that runs the machines'),
    local: LocalProvisionerSection.default({startup_timeout_seconds: 10}),
    proxmox: ProxmoxProvisionerSection.optional().describe('Proxmox VE backend (type = "proxmox")'),
    script: ScriptProvisionerSection.optional().describe('Operator script backend (type = "script")'),
    manual: ManualProvisionerSection.default({poll_interval_seconds: 2}).describe('Provisioning by hand (type = "manual")'),
  })
  .superRefine((section, context) => {
    for (const type of ['proxmox', 'script'] as const) {
      if (section.type === type && section[type] === undefined) {
        context.addIssue({code: 'custom', path: [type], message: `[provisioner.${type}] is required when type = "${type}"`})
      }
    }
  })

export const OfferingSection = z.strictObject({
  name: z.string().min(1).max(128).describe('Offering name; `register` treats it as the identity of the offering'),
  product_type: z.enum(PRODUCT_TYPES).describe('What a renter gets'),
  cpu_cores: z.number().int().positive().describe('vCPUs per machine'),
  memory_mb: z.number().int().positive().describe('Memory per machine, MiB'),
  storage_gb: z.number().int().positive().describe('Disk per machine, GiB'),
  gpu_count: z.number().int().min(0).default(0).describe('GPUs per machine'),
  price_per_hour: z.string().refine(isAmount, 'expected a decimal string with at most 6 fractional digits, like "0.25"').describe('Price in tokens per hour, a decimal string'),
  region: z.string().min(1).optional().describe('Region the machines run in'),
  provisioner: z.string().min(1).optional().describe('Backend label published with the offering'),
})

export const MetricsSection = z.strictObject({
  enabled: z.boolean().default(true).describe('Serve /metrics, /healthz and /readyz'),
  listen: z
    .string()
    .regex(/^[^\s:]+:\d{1,5}$/, 'expected host:port, like 127.0.0.1:9464')
    .default('127.0.0.1:9464')
    .describe('Address of /metrics, /healthz and /readyz'),
})

export const LoggingSection = z.strictObject({
  level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info').describe('Least severe level written'),
  format: z.enum(['auto', 'json', 'pretty']).default('auto').describe('auto: pretty on a terminal, JSON otherwise'),
})

export const ConfigSchema = z.strictObject({
  marketplace: MarketplaceSection,
  provider: ProviderSection.optional(),
  agent: AgentSection.default(AgentSection.parse({})),
  provisioner: ProvisionerSection,
  offerings: z.array(OfferingSection).default([]),
  metrics: MetricsSection.default(MetricsSection.parse({})),
  logging: LoggingSection.default(LoggingSection.parse({})),
})

export type OutpostConfig = z.infer<typeof ConfigSchema>
export type Offering = z.infer<typeof OfferingSection>
export type ProviderProfile = z.infer<typeof ProviderSection>
