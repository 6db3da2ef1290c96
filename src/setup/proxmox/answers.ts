import type {AnswersOf, AnswerTable} from '../answers.js'
import {IMAGE_IDS} from './cloud-templates.js'

/** Every answer `outpost setup proxmox` takes, by flag name: its environment variable, description and default. */
export const PROXMOX_ANSWERS = {
  host: {kind: 'text', env: 'OUTPOST_PROXMOX_HOST', description: 'Proxmox VE host to set up (SSH and, by default, the API)'},
  'ssh-port': {kind: 'integer', env: 'OUTPOST_SSH_PORT', description: 'SSH port', default: 22, min: 1, max: 65_535},
  'ssh-user': {kind: 'text', env: 'OUTPOST_SSH_USER', description: 'SSH user (root, or one that may run qm and pveum)', default: 'root'},
  'ssh-key': {
    kind: 'text',
    env: 'OUTPOST_SSH_KEY',
    description: 'SSH private key file (passphrase from OUTPOST_SSH_KEY_PASSPHRASE); the password comes from OUTPOST_SSH_PASSWORD',
  },
  'host-key-fingerprint': {kind: 'text', env: 'OUTPOST_SSH_HOST_KEY_FINGERPRINT', description: "the host's SSH key fingerprint, SHA256:... (required with no terminal for a new host)"},
  node: {kind: 'text', env: 'OUTPOST_PROXMOX_NODE', description: 'Proxmox node name (default: the host name)'},
  storage: {kind: 'text', env: 'OUTPOST_PROXMOX_STORAGE', description: 'storage for the template disks (asked when the host has several)'},
  bridge: {kind: 'text', env: 'OUTPOST_PROXMOX_BRIDGE', description: 'network bridge of the VMs (asked when the host has several)'},
  images: {kind: 'text', env: 'OUTPOST_PROXMOX_IMAGES', description: `templates to make, comma-separated: ${IMAGE_IDS.join(', ')} (default: ubuntu-24.04)`},
  'template-vmid': {kind: 'integer', env: 'OUTPOST_PROXMOX_TEMPLATE_VMID', description: 'first VMID of the templates (one per image)', default: 9000, min: 100},
  'image-dir': {kind: 'text', env: 'OUTPOST_PROXMOX_IMAGE_DIR', description: 'directory on the host where cloud images are downloaded and kept', default: '/var/lib/vz/template/cache'},
  'snippets-storage': {kind: 'text', env: 'OUTPOST_PROXMOX_SNIPPETS_STORAGE', description: 'storage for the cloud-init vendor snippet (default: local, if it holds snippets)'},
  'api-host': {kind: 'text', env: 'OUTPOST_PROXMOX_API_HOST', description: 'host name the agent uses for the API (default: --host)'},
  'api-port': {kind: 'integer', env: 'OUTPOST_PROXMOX_API_PORT', description: 'Proxmox API port', default: 8006, min: 1, max: 65_535},
  'api-user': {kind: 'text', env: 'OUTPOST_PROXMOX_API_USER', description: 'Proxmox user the token belongs to', default: 'outpost@pve'},
  'token-name': {kind: 'text', env: 'OUTPOST_PROXMOX_TOKEN_NAME', description: 'API token name', default: 'agent'},
  role: {kind: 'text', env: 'OUTPOST_PROXMOX_ROLE', description: 'Proxmox role with the privileges the agent uses', default: 'OutpostAgent'},
  pool: {kind: 'text', env: 'OUTPOST_PROXMOX_POOL', description: 'resource pool of the templates and the rented VMs: the token has its rights there, not on /', default: 'outpost'},
  endpoint: {kind: 'text', env: 'OUTPOST_MARKETPLACE_ENDPOINT', description: 'marketplace API base URL (default: the existing config)'},
  name: {kind: 'text', env: 'OUTPOST_PROVIDER_NAME', description: 'provider name, to register with the main key (default: [provider] name)'},
  'contact-email': {kind: 'text', env: 'OUTPOST_PROVIDER_CONTACT_EMAIL', description: 'contact email, to register with the main key (default: [provider] contact_email)'},
  'provider-pubkey': {kind: 'text', env: 'OUTPOST_PROVIDER_PUBKEY', description: 'provider main public key, for the delegation text to sign offline'},
  'delegation-signature': {kind: 'text', env: 'OUTPOST_DELEGATION_SIGNATURE', description: 'main-key signature (hex) of the delegation text printed by an earlier run'},
  gpus: {
    kind: 'text',
    env: 'OUTPOST_PROXMOX_GPUS',
    description: 'NVIDIA GPUs to pass through to VMs: all, or PCI addresses comma-separated; each gets a resource mapping and a [gpu] passthrough entry (default: none)',
  },
} as const satisfies AnswerTable

export type ProxmoxAnswers = AnswersOf<typeof PROXMOX_ANSWERS>
export type ProxmoxAnswerName = keyof typeof PROXMOX_ANSWERS
