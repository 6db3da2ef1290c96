import type {BiddingConfig} from '../../core/config/schema.js'
import type {OpenOrder} from '../../core/api/provider.js'
import {resourcesOf, shortfall, type Resources} from './resources.js'

/** Why an order got no bid; each is a label of the decisions metric. */
export type DeclineReason =
  | 'region'
  | 'gpu_model'
  | 'duration_too_short'
  | 'duration_too_long'
  | 'no_capacity_info'
  | 'too_large'
  | 'no_free_capacity'
  | 'zero_price'
  | 'above_max_price'
  | 'script_declined'
  | 'script_failed'
  | 'bid_refused'

export type Decision =
  | {kind: 'bid'; price: string; micro: bigint; why: string}
  | {kind: 'declined'; reason: DeclineReason; detail: string}

export const decline = (reason: DeclineReason, detail: string): Decision => ({kind: 'declined', reason, detail})

/** The [bidding.filters] an order must pass before anything is priced or reserved; undefined when it passes. */
export function screenOrder(order: OpenOrder, filters: BiddingConfig['filters']): Decision | undefined {
  if (order.region !== undefined && filters.regions.length > 0 && !filters.regions.includes(order.region)) {
    return decline('region', `region ${order.region} is not one of ${filters.regions.join(', ')}`)
  }
  const model = order.requirements.gpu_model
  if (model !== undefined && filters.gpu_models.length > 0 && !filters.gpu_models.includes(model)) {
    return decline('gpu_model', `GPU model ${model} is not one of ${filters.gpu_models.join(', ')}`)
  }
  if (order.duration_hours < filters.min_duration_hours) {
    return decline('duration_too_short', `${order.duration_hours} h is shorter than the minimum ${filters.min_duration_hours} h`)
  }
  if (order.duration_hours > filters.max_duration_hours) {
    return decline('duration_too_long', `${order.duration_hours} h is longer than the maximum ${filters.max_duration_hours} h`)
  }
  return undefined
}

/** Whether the provisioner could ever run the order (against its whole capacity, whatever is in use). */
export function screenSize(order: OpenOrder, capacity: Resources | undefined): Decision | undefined {
  if (!capacity) return decline('no_capacity_info', 'the provisioner reports no capacity, so nothing can be promised')
  const short = shortfall(resourcesOf(order.requirements), capacity)
  return short === undefined ? undefined : decline('too_large', `larger than this provider: ${short.replace(' available', ' in all')}`)
}
