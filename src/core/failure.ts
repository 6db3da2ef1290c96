import {oneLine} from './printable.js'

/**
 * What a failure report to the marketplace says (a contract's `provisioning_failed` error, a lease's failure reason):
 * a short category and one sanitized line in the provider's own words. The marketplace shows it to the renter, so it
 * never carries what the backend said (a Proxmox task log, a script's stderr, a container's log, node names, paths,
 * addresses of the provider's network): that detail stays in the agent's local log.
 */
export const FAILURE_CATEGORIES = {
  request_refused: "the renter's signed request does not match this contract",
  unknown_offering: 'the provider does not sell the offering this contract names',
  exceeds_offering: 'the contract asks for more than the offering it names',
  no_capacity: 'the provider has no room for this machine now',
  gpu_unavailable: 'the GPUs this contract asks for are not available',
  ssh_key_refused: "the provider's platform refused the renter's SSH key",
  credentials_unsealable: "the machine's credentials cannot be sealed to the renter's key",
  backend_error: "the provider's platform could not make the machine",
  job_failed: 'the job did not run to its end',
} as const

export type FailureCategory = keyof typeof FAILURE_CATEGORIES

/** The longest reason sent, past the category. */
const MAX_REASON = 200

/**
 * `category: reason` on one line. `reason` is the agent's own wording (never a backend's message); without one, the
 * category's standard sentence.
 */
export function failureText(category: FailureCategory, reason?: string): string {
  return `${category}: ${oneLine(reason ?? FAILURE_CATEGORIES[category], MAX_REASON)}`
}

/** Health details a renter may read: the machine's state as its platform words it, and why it is not healthy. */
const PUBLIC_HEALTH_KEYS = new Set(['state', 'vm_status', 'server_status', 'exit_code', 'healthcheck', 'reason'])

/**
 * Health details as the marketplace gets them: the state words and a reason on one short line; an `error` (the
 * backend could not be asked) becomes a standard sentence; anything else (node names, a guest agent's error) stays
 * in the local log.
 */
export function publicHealthDetails(details: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const shown: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(details)) {
    if (key === 'error') shown.error = 'the provider could not read the state of the machine'
    else if (!PUBLIC_HEALTH_KEYS.has(key)) continue
    else if (typeof value === 'string') shown[key] = oneLine(value, MAX_REASON)
    else if (typeof value === 'number' || typeof value === 'boolean') shown[key] = value
  }
  return shown
}
