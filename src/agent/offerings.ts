import type {PublishedOffering} from '../core/api/main-key.js'
import type {Offering} from '../core/config/schema.js'
import type {OfferingTerms} from '../core/contract-request.js'

/** What the agent's own config says of the offering a contract names; `unknown` when it sells none of that id. */
export type OfferingLookup = {kind: 'found'; name: string; terms: OfferingTerms} | {kind: 'unknown'}

export interface OfferingBookOptions {
  /** The config's [[offerings]]: what this provider sells, and so the most a contract may ask of a machine. */
  offerings: readonly Offering[]
  /** The provider's offerings as the marketplace publishes them (GET /offerings); throws when it can't be read. */
  published: (signal: AbortSignal) => Promise<PublishedOffering[]>
  /** An id not seen in the last listing is looked for again at most this often. */
  refreshMs?: number
}

const REFRESH_MS = 30_000

/**
 * The marketplace's offering ids, mapped to the agent's own [[offerings]] by name (`register` publishes each under
 * its name). The terms always come from the config, never from the marketplace's listing: a marketplace that maps an
 * id to the wrong name can at most have a contract bounded by another offering this provider sells, never by one it
 * does not.
 */
export class OfferingBook {
  private readonly byName: Map<string, Offering>
  private readonly names = new Map<string, string>()
  private readAt = Number.NEGATIVE_INFINITY
  /** The listing being read: contracts that arrive together wait for one read. */
  private reading: Promise<void> | undefined
  private readonly refreshMs: number

  constructor(private readonly options: OfferingBookOptions) {
    this.byName = new Map(options.offerings.map((offering) => [offering.name, offering]))
    this.refreshMs = options.refreshMs ?? REFRESH_MS
  }

  /** Whether the config sells anything (with no [[offerings]] every direct contract is refused). */
  get empty(): boolean {
    return this.byName.size === 0
  }

  /** The config's terms for the offering of this id; reads the marketplace's listing when the id is new. Throws when it can't be read. */
  async lookup(offeringId: string, signal: AbortSignal): Promise<OfferingLookup> {
    if (this.empty) return {kind: 'unknown'}
    if (!this.names.has(offeringId) && (this.reading || Date.now() - this.readAt >= this.refreshMs)) {
      this.reading ??= this.read(signal).finally(() => (this.reading = undefined))
      await this.reading
    }
    const name = this.names.get(offeringId)
    const offering = name === undefined ? undefined : this.byName.get(name)
    if (!offering) return {kind: 'unknown'}
    const terms = {product_type: offering.product_type, cpu_cores: offering.cpu_cores, memory_mb: offering.memory_mb, storage_gb: offering.storage_gb, gpu_count: offering.gpu_count}
    return {kind: 'found', name: offering.name, terms}
  }

  private async read(signal: AbortSignal): Promise<void> {
    const published = await this.options.published(signal)
    this.readAt = Date.now()
    for (const offering of published) if (this.byName.has(offering.name)) this.names.set(offering.offering_id, offering.name)
  }
}
