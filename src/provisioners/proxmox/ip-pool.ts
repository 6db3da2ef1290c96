import type {z} from 'zod'

import type {ProxmoxIpPoolSection} from '../../core/config/schema.js'

export type IpPool = z.output<typeof ProxmoxIpPoolSection>

function toNumber(address: string): number {
  return address.split('.').reduce((sum, part) => sum * 256 + Number(part), 0)
}

function toAddress(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.')
}

/** The static address of an `ipconfig0` value (`ip=10.0.0.5/24,gw=10.0.0.1`), or undefined for DHCP. */
export function usedAddress(ipconfig: string | undefined): string | undefined {
  return /(?:^|,)ip=(\d+\.\d+\.\d+\.\d+)\//.exec(ipconfig ?? '')?.[1]
}

/** The first address of the pool that no VM uses, skipping the gateway. */
export function allocateAddress(pool: IpPool, used: ReadonlySet<string>): string | undefined {
  for (let value = toNumber(pool.first); value <= toNumber(pool.last); value++) {
    const address = toAddress(value)
    if (address !== pool.gateway && !used.has(address)) return address
  }
  return undefined
}

export function ipconfigFor(address: string, pool: IpPool): string {
  return `ip=${address}/${pool.prefix_length},gw=${pool.gateway}`
}
