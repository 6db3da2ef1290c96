import type {Contract} from '../../core/api/schemas.js'
import {addResources, resourcesOf, subtractResources, sumResources, type Resources} from './resources.js'

/** Capacity promised to one order: while its bid is open, then once won until its contract is provisioned. */
export interface Promised {
  orderId: string
  resources: Resources
  price: string
  state: 'bid' | 'won'
  contractId?: string
  /** When the won contract's state was last asked for (Unix ms). */
  checkedAt: number
}

/**
 * What the agent has promised to orders, on top of the contracts it holds. The sum of both never exceeds the
 * provisioner's capacity, so the agent never wins more than it can provision.
 */
export class CapacityLedger {
  private readonly promised = new Map<string, Promised>()

  /** Held contracts plus promises; a won order's contract counts once, whichever list it is in. */
  committed(holding: readonly Contract[]): Resources {
    const heldIds = new Set(holding.map((contract) => contract.contract_id))
    const promises = [...this.promised.values()].filter((promise) => !(promise.contractId !== undefined && heldIds.has(promise.contractId)))
    return addResources(sumResources(holding.map(resourcesOf)), sumResources(promises.map((promise) => promise.resources)))
  }

  free(capacity: Resources, holding: readonly Contract[]): Resources {
    return subtractResources(capacity, this.committed(holding))
  }

  reserve(orderId: string, resources: Resources, price: string): void {
    this.promised.set(orderId, {orderId, resources, price, state: 'bid', checkedAt: 0})
  }

  won(orderId: string, contractId: string, now: number): void {
    const promise = this.promised.get(orderId)
    if (promise) this.promised.set(orderId, {...promise, state: 'won', contractId, checkedAt: now})
  }

  checked(orderId: string, now: number): void {
    const promise = this.promised.get(orderId)
    if (promise) promise.checkedAt = now
  }

  release(orderId: string): void {
    this.promised.delete(orderId)
  }

  has(orderId: string): boolean {
    return this.promised.has(orderId)
  }

  all(): Promised[] {
    return [...this.promised.values()]
  }

  count(state: Promised['state']): number {
    return this.all().filter((promise) => promise.state === state).length
  }
}
