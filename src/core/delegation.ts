import {toHex} from './hex.js'
import {signBytes, verifyHex, type KeyPair} from './signing.js'

/** PROTOCOL §3: what an agent key may be allowed to do. Nothing here reaches money, offerings or delegations. */
export const AGENT_PERMISSIONS = [
  'benchmark',
  'fetch_contracts',
  'fetch_jobs',
  'health_check',
  'heartbeat',
  'provision',
  'run_jobs',
  'usage_report',
] as const
export type AgentPermission = (typeof AGENT_PERMISSIONS)[number]

export function isAgentPermission(value: string): value is AgentPermission {
  return (AGENT_PERMISSIONS as readonly string[]).includes(value)
}

export interface DelegationTerms {
  agentPubkey: string
  providerPubkey: string
  permissions: readonly AgentPermission[]
  /** Unix ms, or null for a delegation that never expires. */
  expiresAt: number | null
  label: string
}

/** The exact text the provider main key signs (PROTOCOL §3). */
export function delegationMessage(terms: DelegationTerms): string {
  const permissions = [...new Set(terms.permissions)].sort()
  return [
    'outpost-delegation-v1',
    terms.agentPubkey,
    terms.providerPubkey,
    permissions.join(','),
    terms.expiresAt === null ? 'never' : String(terms.expiresAt),
    terms.label,
  ].join('\n')
}

export function signDelegation(mainKey: KeyPair, terms: Omit<DelegationTerms, 'providerPubkey'>): string {
  const message = delegationMessage({...terms, providerPubkey: toHex(mainKey.publicKey)})
  return toHex(signBytes(message, mainKey.seed))
}

export function verifyDelegation(terms: DelegationTerms, signatureHex: string): boolean {
  return verifyHex(delegationMessage(terms), signatureHex, terms.providerPubkey)
}
