/** A sibling agent as the heartbeat's answer lists it: its id, and how old its last heartbeat was when the answer was made. */
export interface SiblingHeartbeat {
  agent_id: string
  last_heartbeat_age_ms: number
}

/**
 * The other agents of this provider, from the heartbeat's answer (a devnet addition to §5, see the README's protocol
 * notes). A sibling is dead when its last heartbeat is older than the bound; its contracts are then this agent's to
 * check, bill and terminate until it heartbeats again. Ages, not times, travel: no two clocks are compared.
 */
export class Siblings {
  /** When (on this host's clock) each sibling last heartbeated, as far as the last answer said. */
  private readonly lastSeen = new Map<string, number>()
  private listed = false

  constructor(private readonly selfId: string) {}

  /** Whether the marketplace lists siblings at all; without it no contract is taken over. */
  get known(): boolean {
    return this.listed
  }

  /** Takes a heartbeat answer's list (undefined: the marketplace does not list siblings). */
  update(agents: readonly SiblingHeartbeat[] | undefined, receivedAt = Date.now()): void {
    if (agents === undefined) return
    this.listed = true
    for (const agent of agents) {
      if (agent.agent_id === this.selfId) continue
      this.lastSeen.set(agent.agent_id, receivedAt - Math.max(0, agent.last_heartbeat_age_ms))
    }
  }

  /**
   * Milliseconds since the agent's last heartbeat when it is dead (older than `deadAfterMs`), else undefined. An agent
   * the marketplace never listed is not taken for dead: nothing is known of it.
   */
  deadFor(agentId: string, deadAfterMs: number, now = Date.now()): number | undefined {
    if (agentId === this.selfId) return undefined
    const seen = this.lastSeen.get(agentId)
    if (seen === undefined) return undefined
    const age = now - seen
    return age > deadAfterMs ? age : undefined
  }
}
