import {configuredClient} from '../../core/api/factory.js'
import {ProviderApi, type OpenOrder} from '../../core/api/provider.js'
import type {Contract} from '../../core/api/schemas.js'
import type {LoadedConfig} from '../../core/config/load.js'
import {ExitCode, UserError} from '../../core/errors.js'
import type {KeyPair} from '../../core/signing.js'
import {createProvisioner} from '../../provisioners/index.js'
import {previewAuctions, type AuctionPreview} from './auction-preview.js'
import {decideOrder} from './decide.js'
import type {DeclineReason} from './decision.js'
import {CapacityLedger} from './ledger.js'
import {resourcesOf} from './resources.js'
import {pricingScript, wireResources} from './script-pricing.js'

export interface PreviewedOrder extends OpenOrder {
  decision: 'bid' | 'declined'
  price_per_hour?: string
  why?: string
  reason?: DeclineReason
  detail?: string
}

export interface BidPreview {
  enabled: boolean
  strategy: string
  capacity: {cpu_cores: number; memory_mb: number; storage_gb: number; gpu_count: number} | null
  /** Contracts held now (active, and accepted ones waiting for the agent), counted before any order. */
  held_contracts: number
  orders: PreviewedOrder[]
  /** Open §13 auction jobs decided with [jobs.bidding]; null when it is not set. */
  auctions: AuctionPreview | null
}

/**
 * `outpost bid preview`: the open orders decided with the current [bidding] config as a freshly started agent
 * would decide them now (in order, each bid's capacity promised before the next is looked at), bidding nothing.
 */
export async function previewBids(loaded: LoadedConfig, key: KeyPair): Promise<BidPreview> {
  const {config} = loaded
  const providerPubkey = config.marketplace.provider_pubkey
  if (!providerPubkey) {
    throw new UserError(`${loaded.path}: [marketplace] provider_pubkey is not set`, {code: 'not_registered', exit: ExitCode.config, suggestion: 'run `outpost register` first'})
  }
  const client = configuredClient(loaded, 'interactive', {key})
  const api = new ProviderApi(client, providerPubkey)
  const provisioner = createProvisioner(loaded)
  try {
    const [capacity, orders, active, pending] = await Promise.all([provisioner.capacity(), api.openOrders(0), api.activeContracts(), api.pendingProvision(0)])
    const holding = new Map<string, Contract>([...active, ...pending].map((contract) => [contract.contract_id, contract]))
    const bidding = config.bidding
    const script = pricingScript(loaded)
    const ledger = new CapacityLedger()
    const previewed: PreviewedOrder[] = []
    for (const order of orders) {
      const decision = await decideOrder(order, {config: bidding, script, capacity, committed: ledger.committed([...holding.values()]), now: Date.now()})
      if (decision.kind === 'bid') {
        ledger.reserve(order.order_id, resourcesOf(order.requirements), decision.price)
        previewed.push({...order, decision: 'bid', price_per_hour: decision.price, why: decision.why})
      } else {
        previewed.push({...order, decision: 'declined', reason: decision.reason, detail: decision.detail})
      }
    }
    const auctions = (await previewAuctions(loaded, client, providerPubkey)) ?? null
    return {enabled: bidding.enabled, strategy: bidding.strategy, capacity: capacity ? wireResources(capacity) : null, held_contracts: holding.size, orders: previewed, auctions}
  } finally {
    await provisioner.close?.()
  }
}
