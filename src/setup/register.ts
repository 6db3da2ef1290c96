import type {ApiClient} from '../core/api/client.js'
import {configuredClient} from '../core/api/factory.js'
import {
  createDelegation,
  getProvider,
  listDelegations,
  listOfferings,
  publishOffering,
  registerProvider,
  type Delegation,
  type OfferingBody,
  type PublishedOffering,
} from '../core/api/main-key.js'
import type {LoadedConfig} from '../core/config/load.js'
import {setConfigValues} from '../core/config/save.js'
import type {Offering, ProviderProfile} from '../core/config/schema.js'
import {delegationMessage, signDelegation, verifyDelegation, type AgentPermission, type DelegationTerms} from '../core/delegation.js'
import {ExitCode, UserError} from '../core/errors.js'
import {toHex} from '../core/hex.js'
import type {KeyPair} from '../core/signing.js'

/** A delegation that ends within this time is renewed by `register` (and flagged by `doctor --verify-api`). */
export const DELEGATION_RENEW_WITHIN_MS = 7 * 24 * 3600 * 1000

export type StepStatus = 'created' | 'updated' | 'unchanged' | 'skipped' | 'differs'

export interface RegisterOptions {
  loaded: LoadedConfig
  /** The provider main key; absent in the offline flow, where only the delegation is submitted. */
  mainKey?: KeyPair
  agentKey: {publicKey: Uint8Array; seed?: Uint8Array}
  providerPubkey?: string
  profile?: Partial<ProviderProfile>
  permissions: AgentPermission[]
  expiresAt: number | null
  label: string
  /** A delegation signature made offline with the main key over `delegationText()`. */
  delegationSignature?: string
  now?: number
}

export interface RegisterResult {
  provider_pubkey: string
  agent_pubkey: string
  provider: StepStatus
  delegation: {status: StepStatus; permissions: AgentPermission[]; expires_at: number | null; label: string}
  offerings: {name: string; status: StepStatus; offering_id?: string; reason?: string}[]
  config_updated: boolean
  warnings: string[]
}

export function delegationTerms(options: Pick<RegisterOptions, 'agentKey' | 'permissions' | 'expiresAt' | 'label'>, providerPubkey: string): DelegationTerms {
  return {
    agentPubkey: toHex(options.agentKey.publicKey),
    providerPubkey,
    permissions: [...new Set(options.permissions)].sort(),
    expiresAt: options.expiresAt,
    label: options.label,
  }
}

/** The exact text the main key signs for the offline flow (PROTOCOL §3). */
export function delegationText(options: Pick<RegisterOptions, 'agentKey' | 'permissions' | 'expiresAt' | 'label'>, providerPubkey: string): string {
  return delegationMessage(delegationTerms(options, providerPubkey))
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sortedB = [...b].sort()
  return a.length === b.length && [...a].sort().every((value, index) => value === sortedB[index])
}

/** An existing delegation is kept when it grants the same rights, under the same label, and is not about to end. */
function delegationStillGood(existing: Delegation | undefined, terms: DelegationTerms, now: number): boolean {
  if (!existing || existing.revoked_at !== null) return false
  if (!sameSet(existing.permissions, terms.permissions) || existing.label !== terms.label) return false
  if (terms.expiresAt === null) return existing.expires_at === null
  return existing.expires_at !== null && existing.expires_at > now + DELEGATION_RENEW_WITHIN_MS
}

function offeringBody(offering: Offering): OfferingBody {
  return {
    name: offering.name,
    product_type: offering.product_type,
    cpu_cores: offering.cpu_cores,
    memory_mb: offering.memory_mb,
    storage_gb: offering.storage_gb,
    gpu_count: offering.gpu_count,
    price_per_hour: offering.price_per_hour,
    ...(offering.region ? {region: offering.region} : {}),
    ...(offering.provisioner ? {provisioner: offering.provisioner} : {}),
  }
}

function offeringDifferences(published: PublishedOffering, wanted: OfferingBody): string[] {
  const fields: (keyof OfferingBody)[] = ['product_type', 'cpu_cores', 'memory_mb', 'storage_gb', 'gpu_count', 'price_per_hour', 'region', 'provisioner']
  return fields.filter((field) => (published[field] ?? undefined) !== (wanted[field] ?? undefined) && !(field === 'gpu_count' && (published.gpu_count ?? 0) === (wanted.gpu_count ?? 0)))
}

function resolveProfile(options: RegisterOptions): ProviderProfile {
  const merged = {...options.loaded.config.provider, ...Object.fromEntries(Object.entries(options.profile ?? {}).filter(([, value]) => value !== undefined))}
  if (!merged.name || !merged.contact_email) {
    throw new UserError('registering needs a provider name and contact email', {
      code: 'profile_missing',
      exit: ExitCode.usage,
      suggestion: 'pass --name and --contact-email, or add a [provider] section with name and contact_email to the config',
    })
  }
  return {name: merged.name, contact_email: merged.contact_email, website: merged.website, regions: merged.regions ?? []}
}

async function registerProfile(client: ApiClient, providerPubkey: string, profile: ProviderProfile): Promise<StepStatus> {
  const existing = await getProvider(client, providerPubkey).catch((error: unknown) => {
    if (error instanceof UserError && error.code === 'not_found') return undefined
    throw error
  })
  if (
    existing &&
    existing.name === profile.name &&
    existing.contact_email === profile.contact_email &&
    (existing.website ?? undefined) === profile.website &&
    sameSet(existing.regions, profile.regions)
  ) {
    return 'unchanged'
  }
  await registerProvider(client, {
    name: profile.name,
    contact_email: profile.contact_email,
    ...(profile.website ? {website: profile.website} : {}),
    regions: profile.regions,
  })
  return existing ? 'updated' : 'created'
}

async function publishOfferings(client: ApiClient, providerPubkey: string, offerings: Offering[]): Promise<RegisterResult['offerings']> {
  if (offerings.length === 0) return []
  const published = (await listOfferings(client)).filter((offering) => offering.provider_pubkey === undefined || offering.provider_pubkey === providerPubkey)
  const results: RegisterResult['offerings'] = []
  for (const offering of offerings) {
    const wanted = offeringBody(offering)
    const same = published.filter((candidate) => candidate.name === offering.name)
    const identical = same.find((candidate) => offeringDifferences(candidate, wanted).length === 0)
    if (identical) {
      results.push({name: offering.name, status: 'unchanged', offering_id: identical.offering_id})
    } else if (same.length > 0) {
      // PROTOCOL v1 has no route to change an offering: publishing again would leave two under one name.
      results.push({
        name: offering.name,
        status: 'differs',
        offering_id: same[0]?.offering_id,
        reason: `published with other ${offeringDifferences(same[0] as PublishedOffering, wanted).join(', ')}; rename the offering to publish the new terms`,
      })
    } else {
      const created = await publishOffering(client, providerPubkey, wanted)
      results.push({name: offering.name, status: 'created', offering_id: created.offering_id})
    }
  }
  return results
}

/**
 * `outpost register`: the provider profile, the agent's delegation and the config's offerings, each created only
 * when missing or changed, so running it twice changes nothing the second time.
 */
export async function registerWithMarketplace(options: RegisterOptions): Promise<RegisterResult> {
  const now = options.now ?? Date.now()
  const {config, path} = options.loaded
  const providerPubkey = options.mainKey ? toHex(options.mainKey.publicKey) : (options.providerPubkey ?? config.marketplace.provider_pubkey)
  if (!providerPubkey) {
    throw new UserError('the provider public key is unknown', {
      code: 'provider_unknown',
      exit: ExitCode.usage,
      suggestion: 'pass --main-key-file (or OUTPOST_MAIN_KEY_FILE), or --provider-pubkey for the offline flow',
    })
  }
  const terms = delegationTerms(options, providerPubkey)
  const result: RegisterResult = {
    provider_pubkey: providerPubkey,
    agent_pubkey: terms.agentPubkey,
    provider: 'skipped',
    delegation: {status: 'skipped', permissions: terms.permissions as AgentPermission[], expires_at: terms.expiresAt, label: terms.label},
    offerings: [],
    config_updated: false,
    warnings: [],
  }

  if (options.mainKey) {
    const client = configuredClient(options.loaded, 'interactive', {key: options.mainKey})
    result.provider = await registerProfile(client, providerPubkey, resolveProfile(options))
    const existing = (await listDelegations(client, providerPubkey)).find((delegation) => delegation.agent_pubkey === terms.agentPubkey)
    if (delegationStillGood(existing, terms, now)) {
      result.delegation.status = 'unchanged'
    } else {
      const signature = signDelegation(options.mainKey, terms)
      await createDelegation(client, terms, signature)
      result.delegation.status = existing ? 'updated' : 'created'
    }
    result.offerings = await publishOfferings(client, providerPubkey, config.offerings)
    if (config.offerings.length === 0) {
      result.warnings.push(`${path} has no [[offerings]]: nothing can be rented until you add one and run \`outpost register\` again (\`outpost init --offerings all\` sizes them from the backend)`)
    }
  } else {
    const signature = options.delegationSignature
    if (!signature || !verifyDelegation(terms, signature)) {
      throw new UserError(signature ? 'the delegation signature does not verify against the provider key for this text' : 'no main key and no delegation signature', {
        code: 'delegation_signature',
        exit: ExitCode.usage,
        suggestion: 'print the text with `outpost register --print-delegation`, sign it with the main key, and pass the same --expires-at, --permissions and --label with --delegation-signature',
      })
    }
    if (!options.agentKey.seed) throw new UserError('the offline flow needs the agent key to sign the submission', {code: 'key_required'})
    // The delegation proves the provider's consent; the agent key it names submits it (see README, offline signing).
    const client = configuredClient(options.loaded, 'interactive', {key: {publicKey: options.agentKey.publicKey, seed: options.agentKey.seed}})
    await createDelegation(client, terms, signature)
    result.delegation.status = 'created'
  }

  if (config.marketplace.provider_pubkey !== providerPubkey) {
    setConfigValues(path, 'marketplace', {provider_pubkey: providerPubkey})
    result.config_updated = true
  }
  return result
}
