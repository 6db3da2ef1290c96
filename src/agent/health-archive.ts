import {z} from 'zod'

import type {HealthCheck} from '../core/api/provider.js'
import {ContractArchive, readArchive} from './archive.js'
import type {StateDisk} from './state-disk.js'

/**
 * Every health check the agent made of a contract's instance, kept per contract in `<state_dir>/health/<id>.jsonl`:
 * the marketplace keeps its own copy, and a dispute about uptime is answered from this one (`dispute evidence --auto`).
 */
export class HealthArchive extends ContractArchive<HealthCheck> {
  constructor(stateDir: string, disk?: StateDisk) {
    super(stateDir, 'health', disk)
  }
}

const ArchivedHealthCheck = z.object({
  contract_id: z.string(),
  status: z.enum(['healthy', 'unhealthy', 'unknown']),
  uptime_seconds: z.number().nonnegative().optional(),
  checked_at: z.number().int().nonnegative(),
  details: z.record(z.string(), z.unknown()).optional(),
})

/** The archived checks of one contract, oldest first, one per check time; lines that don't parse are counted. */
export function readArchivedHealthChecks(stateDir: string, contractId: string): {checks: HealthCheck[]; skipped: number} {
  const read = readArchive(stateDir, 'health', contractId, (value) => {
    const parsed = ArchivedHealthCheck.safeParse(value)
    return parsed.success && parsed.data.contract_id === contractId ? parsed.data : undefined
  })
  const byTime = new Map<number, HealthCheck>()
  for (const check of read.items) byTime.set(check.checked_at, check)
  return {checks: [...byTime.values()].sort((a, b) => a.checked_at - b.checked_at), skipped: read.skipped}
}
