/**
 * GPUs handed out one holder at a time: a contract or a job gets whole devices (a GPU, a MIG device, a PCI device
 * passed through), keeps them until it is over, and no device ever has two holders. Every change is written to the
 * caller's durable log (the agent's journal) before it takes effect, so a restarted agent holds what it held.
 */

/** A device one holder can be given, as a backend names it. */
export interface GpuUnit {
  /** What the backend hands over: a GPU or MIG UUID (Docker, CUDA), a PCI mapping or address (Proxmox). */
  id: string
  /** The model as published to the marketplace. */
  model: string
}

/** Where allocations are made durable: called before the allocation is used or after it ends. */
export interface AllocationLog {
  allocated(holder: string, ids: readonly string[]): void
  released(holder: string): void
}

/** The holder name of a contract (`contract:<id>`) and of a job (`job:<id>`). */
export const contractHolder = (contractId: string): string => `contract:${contractId}`
export const jobHolder = (jobId: string): string => `job:${jobId}`

/** The devices asked for can't be given. `permanent`: this host could never give them (too few, or no such model). */
export class GpuShortageError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message)
    this.name = 'GpuShortageError'
  }
}

export interface GpuCounts {
  count: number
  models: string[]
}

export class GpuAllocator {
  private readonly holders = new Map<string, readonly string[]>()
  private readonly holderOfId = new Map<string, string>()

  /**
   * `held`: the allocations a previous run left (from the journal). They stand even for a device no longer listed,
   * so a device that reappears is not handed to a second holder.
   */
  constructor(
    readonly units: readonly GpuUnit[],
    held: ReadonlyMap<string, readonly string[]>,
    private readonly log: AllocationLog,
  ) {
    for (const [holder, ids] of held) this.take(holder, ids)
  }

  /**
   * `count` devices (of `model`, when named, compared without case) for `holder`; the same devices again when it
   * holds some already, so a resumed contract keeps its own.
   */
  allocate(holder: string, request: {count: number; model?: string}): GpuUnit[] {
    const existing = this.holders.get(holder)
    if (existing) return existing.map((id) => this.unit(id))
    if (request.count <= 0) return []
    const wanted = request.model?.toLowerCase()
    const fitting = this.units.filter((unit) => wanted === undefined || unit.model.toLowerCase() === wanted)
    const free = fitting.filter((unit) => !this.holderOfId.has(unit.id))
    const what = `${request.count} GPU${request.count === 1 ? '' : 's'}${request.model ? ` of model ${request.model}` : ''}`
    if (fitting.length < request.count) {
      const have = this.units.length === 0 ? 'this host hands out no GPU' : `this host has ${fitting.length} (${this.describeModels()})`
      throw new GpuShortageError(`${what} asked for: ${have}`, true)
    }
    if (free.length < request.count) {
      throw new GpuShortageError(`${what} asked for: ${free.length} of ${fitting.length} free, the others held by ${this.describeHolders(fitting)}`, false)
    }
    const chosen = free.slice(0, request.count)
    const ids = chosen.map((unit) => unit.id)
    this.log.allocated(holder, ids)
    this.take(holder, ids)
    return chosen
  }

  /** Frees the holder's devices; false when it held none. */
  release(holder: string): boolean {
    const ids = this.holders.get(holder)
    if (!ids) return false
    this.log.released(holder)
    this.holders.delete(holder)
    for (const id of ids) this.holderOfId.delete(id)
    return true
  }

  holderOf(id: string): string | undefined {
    return this.holderOfId.get(id)
  }

  /** Every device held now, with its holder. */
  holdings(): Map<string, string> {
    return new Map(this.holderOfId)
  }

  heldBy(holder: string): GpuUnit[] | undefined {
    return this.holders.get(holder)?.map((id) => this.unit(id))
  }

  /** Every device this host hands out, and its models. */
  total(): GpuCounts {
    return counts(this.units)
  }

  /** The devices nobody holds now, and their models. */
  free(): GpuCounts {
    return counts(this.units.filter((unit) => !this.holderOfId.has(unit.id)))
  }

  private take(holder: string, ids: readonly string[]): void {
    this.holders.set(holder, [...ids])
    for (const id of ids) this.holderOfId.set(id, holder)
  }

  private unit(id: string): GpuUnit {
    return this.units.find((unit) => unit.id === id) ?? {id, model: 'unknown'}
  }

  private describeModels(): string {
    return counts(this.units)
      .models.map((model) => `${this.units.filter((unit) => unit.model === model).length} × ${model}`)
      .join(', ')
  }

  private describeHolders(units: readonly GpuUnit[]): string {
    const holders = [...new Set(units.map((unit) => this.holderOfId.get(unit.id)).filter((holder) => holder !== undefined))]
    return holders.slice(0, 3).join(', ') + (holders.length > 3 ? ` and ${holders.length - 3} more` : '')
  }
}

function counts(units: readonly GpuUnit[]): GpuCounts {
  return {count: units.length, models: [...new Set(units.map((unit) => unit.model))].sort()}
}
