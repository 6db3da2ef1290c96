import type {OpenOrder} from '../../core/api/provider.js'
import type {BiddingConfig} from '../../core/config/schema.js'
import {parseAmount} from '../../core/decimal.js'
import {decline, screenOrder, screenSize, type Decision} from './decision.js'
import {quoteOrder, withFloor, type Quote} from './pricing.js'
import {addResources, mostUtilised, resourcesOf, shortfall, subtractResources, type Resources} from './resources.js'
import {priceByScript, wireResources, type PricingScript} from './script-pricing.js'

export interface DecideContext {
  config: BiddingConfig
  /** The resolved program of the script strategy. */
  script: PricingScript | undefined
  capacity: Resources | undefined
  /** Held, won and bid on now, this order not included. */
  committed: Resources
  now: number
  signal?: AbortSignal
}

/**
 * One order's decision, reserving nothing: the filters, whether it could ever fit, whether it fits in what is free,
 * then the price (the script strategy runs the operator's program) and the order's max price. The caller reserves
 * only after a `bid`, so a declined or failed order never holds capacity.
 */
export async function decideOrder(order: OpenOrder, context: DecideContext): Promise<Decision> {
  const screened = screenOrder(order, context.config.filters) ?? screenSize(order, context.capacity)
  if (screened) return screened
  // screenSize declined when there is no capacity; this keeps the compiler's narrowing.
  if (!context.capacity) return decline('no_capacity_info', 'the provisioner reports no capacity')
  const need = resourcesOf(order.requirements)
  const free = subtractResources(context.capacity, context.committed)
  const short = shortfall(need, free)
  if (short !== undefined) return decline('no_free_capacity', `not enough free capacity: ${short}`)

  let quote: Quote
  if (context.config.strategy === 'script') {
    if (!context.script) return decline('script_failed', 'strategy = "script" without [bidding.script]')
    const verdict = await priceByScript(
      context.script,
      {order, capacity: wireResources(context.capacity), free: wireResources(free), now: context.now},
      context.signal,
    )
    if (verdict.kind === 'decline') return decline('script_declined', `the pricing script declined: ${verdict.reason}`)
    if (verdict.kind === 'failed') return decline('script_failed', `the pricing script failed: ${verdict.reason}`)
    quote = withFloor(verdict.micro, context.config.floor_price, 'script')
  } else {
    quote = quoteOrder(context.config, {requirements: need, at: context.now, utilisation: mostUtilised(addResources(context.committed, need), context.capacity)})
  }
  if (quote.micro === 0n) return decline('zero_price', 'the price comes to 0: set [bidding.prices] or floor_price')
  const max = parseAmount(order.max_price_per_hour)
  if (quote.micro > max) return decline('above_max_price', `our price ${quote.price} is above the order's max ${order.max_price_per_hour} (${quote.why})`)
  return {kind: 'bid', price: quote.price, micro: quote.micro, why: quote.why}
}
