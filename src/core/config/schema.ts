import {z} from 'zod'

import {JobsSection} from './jobs.js'
import {isAmount} from '../decimal.js'

/**
 * The one description of outpost.toml. Every section is strict (an unknown key is an error, with a suggestion),
 * and every default lives here, so the README's config reference is generated from this file.
 */

const seconds = (fallback: number, min = 1, max = 86_400) => z.number().int().min(min).max(max).default(fallback)
const hexKey = z.string().regex(/^[0-9a-f]{64}$/, 'expected a 64-character lowercase hex public key')

/** The fields whose values a config error never shows (load.ts looks each failing key up here). */
export const secretFields = z.registry<{secret: true}>()

// Control characters, line and paragraph separators, and bidirectional overrides that would disguise a name.
const UNPRINTABLE = /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]/u
/** A name shown to people or handed to a backend: one line of printable text. */
const oneLine = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((text) => !UNPRINTABLE.test(text), 'expected one line of printable text, without control characters')
/** A file or socket path: one line, no control characters, at most PATH_MAX. */
const filePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((text) => !UNPRINTABLE.test(text), 'expected a path without control characters')

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/** host:port that a server can bind: an IPv4 address or a host name, and a port (0: any free one, as tests use). */
function isListenAddress(text: string): boolean {
  const match = /^(.+):(\d{1,5})$/.exec(text)
  if (!match) return false
  const [, host = '', port = ''] = match
  const isHost = /^[\d.]+$/.test(host) ? IPV4.test(host) : HOST_NAME.test(host)
  return isHost && Number(port) <= 65_535
}

export const PRODUCT_TYPES = ['compute', 'gpu', 'dedicated', 'container'] as const

export const MarketplaceSection = z.strictObject({
  endpoint: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}).describe('Marketplace API base URL (without /api/v1)'),
  provider_pubkey: hexKey.optional().describe('The provider main public key; set by `outpost register`'),
  request_timeout_seconds: seconds(30, 1, 300).describe('Timeout of one API request'),
  allow_insecure_http: z
    .boolean()
    .default(false)
    .describe('Allow an http:// endpoint that is not loopback (signed requests and answers then cross the network in clear)'),
})

export const ProviderSection = z.strictObject({
  name: oneLine(128).describe('Provider name shown to renters; published by `outpost register`'),
  contact_email: z.email({error: 'expected an email address'}).describe('Where the marketplace and renters reach you'),
  website: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}).optional().describe('Your website'),
  regions: z.array(oneLine(64)).default([]).describe('Regions you serve, like ["eu-central"]'),
})

/** A schedule: `off`, or a duration with its unit, as every duration flag takes it (`24h`, `7d`). */
const schedule = z
  .string()
  .refine((text) => text === 'off' || /^\d+(?:\.\d+)?(ms|s|m|h|d|w)$/.test(text.trim()), 'expected "off" or a duration with its unit, like 24h or 7d (ms, s, m, h, d, w)')
  .default('off')

export const AgentSection = z.strictObject({
  key_file: filePath.default('agent.key').describe('Agent key file, relative to this config file'),
  state_dir: filePath.default('state').describe('Journal, outbox and pid files, relative to this config file'),
  heartbeat_seconds: seconds(60, 10, 3600).describe('Heartbeat interval when the marketplace names none within 10–3600 (PROTOCOL §5)'),
  long_poll_wait_seconds: seconds(25, 0, 30).describe('How long the server may hold a pending-contract request (0 turns long poll off)'),
  poll_interval_seconds: seconds(30, 1, 3600).describe('Polling interval when long poll fails'),
  health_check_interval_seconds: seconds(60, 1, 3600).describe('Interval between batched health reports'),
  usage_interval_seconds: seconds(300, 1, 86_400).describe('Interval between signed usage reports'),
  reconcile_interval_seconds: seconds(600, 10, 86_400).describe('Interval between reconciliations with the marketplace'),
  active_sync_seconds: seconds(15, 1, 3600).describe('Interval between reads of the active contracts, to terminate the cancelled and expired'),
  max_concurrent_provisions: z.number().int().min(1).max(256).default(4).describe('Contracts provisioned at once'),
  lock_ttl_seconds: seconds(900, 30, 3600).describe('Contract lock TTL; longer than the provisioner worst case'),
  sibling_dead_after_seconds: z
    .number()
    .int()
    .min(0)
    .max(86_400)
    .refine((value) => value === 0 || value >= 20, 'expected 0 (3 × the heartbeat interval) or at least 20 seconds')
    .default(0)
    .describe("Another agent of this provider whose last heartbeat is older than this is dead, and its contracts are taken over (0: 3 × the heartbeat interval)"),
  archive_days: z
    .number()
    .int()
    .min(0)
    .max(3650)
    .default(180)
    .describe("Days the usage and health archives (dispute evidence) keep a contract's records after its last one (0: forever)"),
  auto_claim: schedule.describe('How often the daemon claims pending stake rewards, like 24h ("off": never); needs main_key_file'),
  main_key_file: filePath
    .optional()
    .describe('The provider main key, for auto_claim only, relative to this config file; an encrypted one opens with OUTPOST_KEY_PASSPHRASE or run --passphrase-file'),
  benchmark_every: schedule.describe('How often the daemon runs `benchmark run --submit` with the agent key, like 7d ("off": never)'),
})

export const LocalProvisionerSection = z.strictObject({
  command: z.array(z.string().min(1)).min(1).optional().describe('Workload command; it gets PORT in its environment (default: a built-in banner service)'),
  startup_timeout_seconds: seconds(10, 1, 600).describe('Time for the workload to accept TCP connections'),
  instances_dir: z
    .string()
    .min(1)
    .optional()
    .describe('Where instance records live, relative to this config file (default: <state_dir>/local); agents on one host that take over each other\'s contracts share one'),
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
    .register(secretFields, {secret: true})
    .describe('API token secret (a UUID); prefer OUTPOST_PROVISIONER_PROXMOX_TOKEN_SECRET'),
  tls_fingerprint: z
    .string()
    .regex(/^(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{64}$/, 'expected a SHA-256 fingerprint, 32 hex bytes like AB:CD:...')
    .optional()
    .describe('SHA-256 fingerprint of a self-signed host certificate to pin; without it the certificate must verify'),
  node: oneLine(64).default('auto').describe('Node that runs the VMs; auto: the node with most free memory that has the storage'),
  template_vmid: z.number().int().min(100).max(999_999_999).describe('VMID of the cloud-init template to clone'),
  clone: z.enum(['linked', 'full']).default('linked').describe('linked: fast, shares the template disk; full: an independent copy'),
  storage: oneLine(128).optional().describe("Target storage of full clones (default: the template's storage)"),
  pool: oneLine(128).optional().describe('Proxmox resource pool for the VMs'),
  disk: z.string().regex(/^(?:scsi|virtio|sata|ide)\d+$/, 'expected a disk key like scsi0').default('scsi0').describe('Disk grown to the offering storage'),
  ciuser: oneLine(64).default('outpost').describe('Cloud-init user created in the VM (depends on the template)'),
  ssh_port: z.number().int().min(1).max(65_535).default(22).describe('SSH port of the VMs'),
  ip_pool: ProxmoxIpPoolSection.optional().describe('Static addresses for the VMs (default: DHCP)'),
  task_timeout_seconds: seconds(600, 1, 7200).describe('Longest a Proxmox task (clone, start, destroy) may run'),
  address_timeout_seconds: seconds(300, 1, 3600).describe("Longest wait for the guest agent to report the VM's address"),
  shutdown_timeout_seconds: seconds(30, 0, 600).describe('Graceful shutdown time before a forced stop on terminate (0: stop at once)'),
  request_timeout_seconds: seconds(30, 1, 300).describe('Timeout of one API request'),
  keep_failed: z.boolean().default(false).describe('Keep the VM of a failed provisioning for inspection instead of destroying it'),
})

export const ScriptProvisionerSection = z.strictObject({
  command: filePath.describe('Executable called as `<command> <action>` with JSON on stdin; relative to this config file'),
  provision_timeout_seconds: seconds(900, 1, 7200).describe('Longest a provision action may run'),
  action_timeout_seconds: seconds(60, 1, 3600).describe('Longest any other action may run'),
})

export const ManualProvisionerSection = z.strictObject({
  webhook_url: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}).register(secretFields, {secret: true}).optional().describe('Posted a JSON notice for each request'),
  poll_interval_seconds: seconds(2, 1, 300).describe('How often a waiting provision looks for the operator answer'),
})

const tcpPort = z.number().int().min(1).max(65_535)
const environmentName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name, like OUTPOST_PASSWORD')

export const DockerProvisionerSection = z.strictObject({
  socket: filePath.default('/var/run/docker.sock').describe('Unix socket of the Docker Engine API'),
  image: oneLine(256).describe('Image of the containers; it must already be on the engine (nothing is pulled)'),
  command: z.array(z.string().min(1)).min(1).optional().describe("Container command (default: the image's own)"),
  service_port: tcpPort.default(22).describe('Container port published for the renter (SSH or the service), on a free host port'),
  bind_address: ipv4.default('0.0.0.0').describe('Host address the port is published on'),
  public_address: oneLine(253).optional().describe("Address renters connect to (default: this host's first non-internal IPv4)"),
  username: oneLine(64).default('root').describe('Login name handed to the renter with the password'),
  password_env: environmentName
    .default('OUTPOST_PASSWORD')
    .describe("Environment variable that carries the contract's random password into the container; the image sets its login from it"),
  ssh_key_env: environmentName.default('OUTPOST_SSH_AUTHORIZED_KEYS').describe("Environment variable that carries the renter's SSH public key into the container"),
  startup_timeout_seconds: seconds(60, 1, 600).describe('Time for the published port to accept TCP connections'),
  stop_timeout_seconds: seconds(10, 0, 300).describe('Graceful stop time before the engine kills a container on terminate'),
  request_timeout_seconds: seconds(30, 1, 300).describe('Timeout of one Engine API request'),
})

export const HetznerProvisionerSection = z.strictObject({
  token: z
    .string()
    .regex(/^[A-Za-z0-9]{64}$/, 'expected a Hetzner Cloud API token (64 letters and digits)')
    .register(secretFields, {secret: true})
    .describe('Read & write API token of the Hetzner Cloud project; prefer OUTPOST_PROVISIONER_HETZNER_TOKEN'),
  api_url: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}).default('https://api.hetzner.cloud/v1').describe('API base URL'),
  image: oneLine(256).default('ubuntu-24.04').describe('Image of the servers (name or id)'),
  region: oneLine(64).optional().describe('Location (fsn1) or network zone (eu-central) of the servers; default: the cheapest anywhere'),
  architecture: z.enum(['x86', 'arm']).default('x86').describe('CPU architecture of the server types considered'),
  server_types: z.array(oneLine(64)).min(1).optional().describe('Only these server types are considered (default: all that fit)'),
  ssh_port: tcpPort.default(22).describe('SSH port of the servers'),
  action_timeout_seconds: seconds(600, 1, 3600).describe('Longest a server action (create, delete) may run'),
  request_timeout_seconds: seconds(30, 1, 300).describe('Timeout of one API request'),
})

const slurmTime = z
  .string()
  .regex(/^(?:UNLIMITED|(?:\d+-)?\d+(?::\d+){0,2})$/, 'expected a SLURM time limit, like 2-00:00:00, 90 or UNLIMITED')

export const SlurmProvisionerSection = z.strictObject({
  partition: z.string().regex(/^[\w.-]+$/, 'expected a partition name').optional().describe("Partition of the jobs (default: the cluster's default)"),
  account: z.string().regex(/^[\w.-]+$/, 'expected an account name').optional().describe('Account the jobs are charged to'),
  nodes: z.number().int().min(1).max(10_000).default(1).describe('Nodes per job'),
  tasks: z.number().int().min(1).max(100_000).default(1).describe('Tasks per job; each gets the contract cpu_cores as cpus-per-task'),
  time_limit: slurmTime.optional().describe("Job time limit (default: the partition's)"),
  gpu_type: z.string().regex(/^[\w.-]+$/, 'expected a GRES type, like a100').optional().describe('GPU type in the gres request (gpu:<type>:<count>)'),
  template: filePath.optional().describe('Job script template, relative to this config file (default: templates/slurm/outpost-job.sh of the package)'),
  slurm_conf: filePath.optional().describe('slurm.conf for the SLURM commands (SLURM_CONF); default: the system one'),
  ssh_port: tcpPort.default(22).describe('Port renters connect to on the allocated node'),
  start_timeout_seconds: seconds(300, 1, 86_400).describe('Longest a job may stay pending before the contract fails'),
  command_timeout_seconds: seconds(30, 1, 600).describe('Timeout of one sbatch, squeue, scancel or sinfo call'),
  run_as: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'expected a Unix user name')
    .describe("Unprivileged Unix user the renters' jobs run as (sbatch --uid: the agent runs as root); never the agent's own user"),
})

export const ProvisionerSection = z
  .strictObject({
    type: z.enum(['local', 'proxmox', 'script', 'manual', 'docker', 'hetzner', 'slurm']).describe('Backend that runs the machines'),
    local: LocalProvisionerSection.default({startup_timeout_seconds: 10}),
    proxmox: ProxmoxProvisionerSection.optional().describe('Proxmox VE backend (type = "proxmox")'),
    script: ScriptProvisionerSection.optional().describe('Operator script backend (type = "script")'),
    manual: ManualProvisionerSection.default({poll_interval_seconds: 2}).describe('Provisioning by hand (type = "manual")'),
    docker: DockerProvisionerSection.optional().describe('Docker Engine backend (type = "docker")'),
    hetzner: HetznerProvisionerSection.optional().describe('Hetzner Cloud backend (type = "hetzner")'),
    slurm: SlurmProvisionerSection.optional().describe('SLURM batch jobs (type = "slurm")'),
  })
  .superRefine((section, context) => {
    for (const type of ['proxmox', 'script', 'docker', 'hetzner', 'slurm'] as const) {
      if (section.type === type && section[type] === undefined) {
        context.addIssue({code: 'custom', path: [type], message: `[provisioner.${type}] is required when type = "${type}"`})
      }
    }
  })

export const OfferingSection = z.strictObject({
  name: oneLine(128).describe('Offering name; `register` treats it as the identity of the offering'),
  product_type: z.enum(PRODUCT_TYPES).describe('What a renter gets'),
  cpu_cores: z.number().int().positive().describe('vCPUs per machine'),
  memory_mb: z.number().int().positive().describe('Memory per machine, MiB'),
  storage_gb: z.number().int().positive().describe('Disk per machine, GiB'),
  gpu_count: z.number().int().min(0).default(0).describe('GPUs per machine'),
  price_per_hour: z.string().refine(isAmount, 'expected a decimal string with at most 6 fractional digits, like "0.25"').describe('Price in tokens per hour, a decimal string'),
  region: oneLine(64).optional().describe('Region the machines run in'),
  provisioner: oneLine(64).optional().describe('Backend label published with the offering'),
})

const amount = z.string().refine(isAmount, 'expected a decimal string with at most 6 fractional digits, like "0.25"')
const multiplier = amount.refine((value) => /[1-9]/.test(value), 'expected a multiplier above zero, a decimal string like "1.25"')
const hourOfDay = z.number().int().min(0, 'expected an hour 0-23').max(23, 'expected an hour 0-23')
const durationHours = z.number().int().min(1).max(8760)

export const BiddingPricesSection = z.strictObject({
  cpu_core: amount.default('0').describe('Price per CPU core per hour'),
  memory_gb: amount.default('0').describe('Price per GiB of memory per hour'),
  storage_gb: amount.default('0').describe('Price per GiB of storage per hour'),
  gpu: amount.default('0').describe('Price per GPU per hour'),
})

export const BiddingPeakSection = z
  .strictObject({
    start_hour: hourOfDay.describe('Hour the peak window starts, UTC'),
    end_hour: hourOfDay.describe('Hour the peak window ends, UTC, exclusive; a window may wrap midnight (start 22, end 6)'),
    multiplier: multiplier.describe('Price multiplier inside the window, like "1.25"'),
  })
  .refine((peak) => peak.start_hour !== peak.end_hour, {message: 'expected end_hour to differ from start_hour', path: ['end_hour']})

export const BiddingScarcitySection = z.strictObject({
  above_percent: z
    .number()
    .int()
    .min(0)
    .max(100)
    .default(80)
    .describe('Utilisation of any one resource, in percent, above which the multiplier applies (held, won and bid on, this order included)'),
  multiplier: multiplier.default('1').describe('Price multiplier when capacity is scarce, like "1.5"'),
})

export const BiddingFiltersSection = z
  .strictObject({
    regions: z.array(oneLine(64)).default([]).describe('Bid only on orders in these regions (empty: any); an order naming no region passes'),
    gpu_models: z.array(oneLine(64)).default([]).describe('Bid only on orders asking for these GPU models (empty: any); an order naming no model passes'),
    min_duration_hours: durationHours.default(1).describe('Shortest order bid on, in hours'),
    max_duration_hours: durationHours.default(8760).describe('Longest order bid on, in hours'),
  })
  .refine((filters) => filters.min_duration_hours <= filters.max_duration_hours, {
    message: 'expected max_duration_hours at or above min_duration_hours',
    path: ['max_duration_hours'],
  })

export const BiddingScriptSection = z.strictObject({
  command: filePath.describe('Executable called as `<command> bid` with the order as JSON on stdin; prints {"price_per_hour": "1.25"} or {"decline": "why"}; relative to this config file'),
  timeout_seconds: seconds(5, 1, 300).describe('Longest the script may take to answer; it is killed after'),
})

export const BiddingSection = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Bid on open orders (PROTOCOL §11) while `outpost run` runs'),
    strategy: z
      .enum(['fixed', 'dynamic', 'script'])
      .default('fixed')
      .describe('fixed: the base prices; dynamic: the base prices times the peak and scarcity multipliers; script: the operator program prices each order'),
    prices: BiddingPricesSection.default(BiddingPricesSection.parse({})).describe('Base prices per hour, decimal strings'),
    floor_price: amount.default('0').describe('No bid goes below this price per hour, whatever the strategy'),
    peak: BiddingPeakSection.optional().describe('Peak hours of the dynamic strategy (default: none)'),
    scarcity: BiddingScarcitySection.default(BiddingScarcitySection.parse({})).describe('Scarcity pricing of the dynamic strategy'),
    filters: BiddingFiltersSection.default(BiddingFiltersSection.parse({})).describe('Orders not bid on, whatever the price'),
    script: BiddingScriptSection.optional().describe('The pricing program (strategy = "script")'),
  })
  .superRefine((section, context) => {
    if (section.strategy === 'script' && section.script === undefined) {
      context.addIssue({code: 'custom', path: ['script'], message: '[bidding.script] is required when strategy = "script"'})
    }
  })

const PCI_ADDRESS = /^(?:[0-9a-f]{4,}:)?[0-9a-f]{2}:[0-9a-f]{2}(?:\.[0-9a-f])?$/
const GPU_DEVICE = /^(?:\d+|GPU-[0-9a-f-]{36}|MIG-[0-9a-f-]{36}|MIG-GPU-[0-9a-f-]{36}\/\d+\/\d+)$/i

export const GpuPassthroughSection = z
  .strictObject({
    mapping: z
      .string()
      .regex(/^[a-z][a-z0-9_-]{1,63}$/i, 'expected a Proxmox mapping id, like outpost-gpu0')
      .optional()
      .describe('Proxmox VE PCI resource mapping (Datacenter → Resource Mappings) handed to a VM as hostpci mapping=<id>'),
    address: z
      .string()
      .regex(PCI_ADDRESS, 'expected a PCI address, like 0000:01:00 or 0000:01:00.0')
      .optional()
      .describe('Raw PCI address instead of a mapping; Proxmox VE accepts it from root@pam with a password only, never from an API token'),
    model: oneLine(64).describe('GPU model published for this device, like "H100 PCIe"'),
    pcie: z.boolean().default(true).describe("Attach on the PCI Express bus (needs the template's machine type to be q35)"),
  })
  .refine((entry) => (entry.mapping === undefined) !== (entry.address === undefined), {message: 'expected exactly one of mapping and address'})

export const GpuSection = z.strictObject({
  nvidia_smi: filePath.default('nvidia-smi').describe('The nvidia-smi command (a name on PATH or a path) that lists and measures the GPUs'),
  devices: z
    .array(z.string().regex(GPU_DEVICE, 'expected a GPU index like 0, or a GPU-… or MIG-… UUID'))
    .optional()
    .describe('GPUs Outpost may hand out, by index or UUID (MIG devices by UUID); default: every GPU nvidia-smi lists'),
  mig: z.boolean().default(false).describe('Hand out the MIG devices of GPUs with MIG mode on (each to one holder); off: such GPUs are not handed out'),
  models: z
    .record(oneLine(256), oneLine(64))
    .default({})
    .describe('Published model name per nvidia-smi name (MIG devices: "<name> MIG <profile>"), like {"NVIDIA H100 80GB HBM3" = "h100-80gb"}'),
  dcgm_url: z.url({protocol: /^https?$/, error: 'expected an http:// or https:// URL'}).optional().describe('dcgm-exporter /metrics URL to read GPU metrics from (default: nvidia-smi)'),
  passthrough: z.array(GpuPassthroughSection).default([]).describe('Proxmox VE: the PCI devices passed through to VMs, one per GPU (`outpost setup proxmox --gpus` writes them)'),
})

export const MetricsSection = z.strictObject({
  enabled: z.boolean().default(true).describe('Serve /metrics, /healthz and /readyz'),
  listen: z
    .string()
    .refine(isListenAddress, 'expected host:port, an IPv4 address or host name and a port 0-65535, like 127.0.0.1:9464')
    .default('127.0.0.1:9464')
    .describe('Address of /metrics, /healthz and /readyz'),
})

export const LoggingSection = z.strictObject({
  level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info').describe('Least severe level written'),
  format: z.enum(['auto', 'json', 'pretty']).default('auto').describe('auto: pretty on a terminal, JSON otherwise'),
})

const PCR_SELECTION = /^(?:sha1|sha256|sha384|sha512):(?:[0-9]|1[0-9]|2[0-3])(?:,(?:[0-9]|1[0-9]|2[0-3]))*(?:\+(?:sha1|sha256|sha384|sha512):(?:[0-9]|1[0-9]|2[0-3])(?:,(?:[0-9]|1[0-9]|2[0-3]))*)*$/

export const AttestationSection = z.strictObject({
  enabled: z.boolean().default(false).describe('Attach a TPM 2.0 quote to every job result and take jobs that require attestation (PROTOCOL §14; `outpost attest enroll` first)'),
  tcti: oneLine(512)
    .default('device:/dev/tpmrm0')
    .describe('How tpm2-tools reach the TPM (TPM2TOOLS_TCTI): device:/dev/tpmrm0 (the kernel resource manager), or swtpm:host=127.0.0.1,port=2321'),
  pcrs: z
    .string()
    .regex(PCR_SELECTION, 'expected a PCR selection like sha256:0,1,2,3,4,5,6,7')
    .default('sha256:0,1,2,3,4,5,6,7')
    .describe('The PCRs every quote covers (the boot measurements: firmware, boot loader, kernel); enrolled with the AK'),
  ak_handle: z
    .string()
    .regex(/^0x81[0-9a-fA-F]{6}$/, 'expected a persistent handle like 0x81010002')
    .default('0x81010002')
    .describe('Persistent handle (owner hierarchy) where the attestation key is kept across reboots'),
})

/** `register` identifies an offering by its name, so two with one name would overwrite each other. */
function uniqueOfferingNames(offerings: readonly {name: string}[], context: z.RefinementCtx): void {
  const first = new Map<string, number>()
  offerings.forEach((offering, index) => {
    const earlier = first.get(offering.name)
    if (earlier === undefined) first.set(offering.name, index)
    else context.addIssue({code: 'custom', path: [index, 'name'], message: `duplicate offering name: offerings[${earlier}] has it too`})
  })
}

export const ConfigSchema = z.strictObject({
  marketplace: MarketplaceSection,
  provider: ProviderSection.optional(),
  agent: AgentSection.default(AgentSection.parse({})),
  provisioner: ProvisionerSection,
  offerings: z.array(OfferingSection).superRefine(uniqueOfferingNames).default([]),
  metrics: MetricsSection.default(MetricsSection.parse({})),
  logging: LoggingSection.default(LoggingSection.parse({})),
  bidding: BiddingSection.default(BiddingSection.parse({})),
  gpu: GpuSection.default(GpuSection.parse({})).describe('GPUs: which are handed out, under which names, and how'),
  jobs: JobsSection.default(JobsSection.parse({})).describe('Job markets (PROTOCOL §12): which kinds are served, and the executor of each'),
  attestation: AttestationSection.default(AttestationSection.parse({})).describe('TPM 2.0 attestation of job results (PROTOCOL §14)'),
})

export type OutpostConfig = z.infer<typeof ConfigSchema>
export type Offering = z.infer<typeof OfferingSection>
export type ProviderProfile = z.infer<typeof ProviderSection>
export type BiddingConfig = z.infer<typeof BiddingSection>
export type GpuConfig = z.infer<typeof GpuSection>
export type JobsConfig = z.infer<typeof JobsSection>
export type AttestationConfig = z.infer<typeof AttestationSection>
