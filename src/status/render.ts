import {describeTime} from '../ui/time.js'
import type {StatusReport} from './status.js'

function counts(record: Record<string, number> | null): string {
  if (record === null) return 'unknown'
  const entries = Object.entries(record).filter(([, count]) => count > 0)
  return entries.length === 0 ? 'none' : entries.map(([status, count]) => `${count} ${status}`).join(', ')
}

function at(time: number | null, now: number): string {
  return time === null ? 'never' : describeTime(time, now)
}

/** The whole report, for a person at a terminal (or a log, once). */
export function renderStatus(report: StatusReport): string[] {
  const {agent, marketplace, money, checked_at: now} = report
  const lines: string[] = []
  lines.push('Agent (this host)')
  if (!agent.running) {
    lines.push(`  running          no`)
  } else {
    const readiness = agent.ready === null ? 'unknown (its /readyz does not answer)' : agent.ready ? 'ready' : `not ready: ${agent.not_ready_reasons.map((reason) => reason.code).join(', ')}`
    lines.push(`  running          yes, pid ${agent.pid}${agent.status === 'draining' ? ', draining' : ''}; ${readiness}`)
    if (agent.version) lines.push(`  version          ${agent.version}`)
    lines.push(`  last heartbeat   ${agent.ready === null ? 'unknown' : `acknowledged ${at(agent.last_heartbeat_acknowledged_at, now)}`}`)
  }
  lines.push(`  outbox           ${agent.outbox_depth} report${agent.outbox_depth === 1 ? '' : 's'} waiting`)
  lines.push(`  in flight        ${agent.in_flight} contract${agent.in_flight === 1 ? '' : 's'}${agent.running ? '' : ' (resumed by the next run)'}`)
  lines.push('Marketplace')
  if (report.provider_pubkey === null) {
    lines.push('  not registered   nothing to ask the marketplace yet')
  } else if (!marketplace.reachable) {
    lines.push(`  unreachable      ${marketplace.error ?? ''}`)
  } else {
    lines.push(`  provider         ${marketplace.provider_status}${marketplace.status_reason ? ` (${marketplace.status_reason})` : ''}`)
    const agentStatus = marketplace.agent_status
    if (agentStatus) {
      lines.push(`  agent            ${agentStatus.online ? 'online' : 'offline'}, last heartbeat ${at(agentStatus.last_heartbeat_at, now)}${agentStatus.version ? `, version ${agentStatus.version}` : ''}`)
    }
    lines.push(`  contracts        ${counts(marketplace.contracts_by_status)}`)
    lines.push(`  waiting          ${marketplace.pending_contracts ?? 'unknown'} pending, ${marketplace.tier_limited_contracts ?? 'unknown'} held back by the tier limit`)
    if (marketplace.health) {
      const uptime = marketplace.health.uptime_percent === null ? 'no checks yet' : `${marketplace.health.uptime_percent}% healthy`
      lines.push(`  health (30 d)    ${uptime} (${marketplace.health.healthy_checks}/${marketplace.health.total_checks} checks)`)
    }
    if (marketplace.leases_by_status) lines.push(`  leases           ${counts(marketplace.leases_by_status)}`)
    if (marketplace.delegation) lines.push(`  delegation       ${marketplace.delegation.expires_at === null ? 'never expires' : `expires ${at(marketplace.delegation.expires_at, now)}`}`)
  }
  if (money) {
    lines.push('Money')
    lines.push(`  stake            ${money.staked} (tier ${money.tier}, ${money.max_concurrent_contracts ?? 'no limit on'} concurrent contracts)`)
    lines.push(`  rewards pending  ${money.rewards_pending}`)
    const usage = money.usage_last_day
    lines.push(`  billed (24 h)    ${usage.records} usage records for ${usage.contracts} contracts: ${usage.cpu_core_hours} core-hours${usage.gpu_hours > 0 ? `, ${usage.gpu_hours} GPU-hours` : ''}`)
  }
  lines.push(report.attention.length === 0 ? 'Needs attention: nothing' : 'Needs attention')
  for (const item of report.attention) lines.push(`  ! ${item.message}`, `    → ${item.command}`)
  return lines
}

/** One line per refresh, for --watch off a terminal (a log). */
export function renderStatusLine(report: StatusReport): string {
  const {agent, marketplace} = report
  const parts = [
    new Date(report.checked_at).toISOString(),
    `agent=${agent.running ? (agent.status === 'draining' ? 'draining' : agent.ready === false ? 'not-ready' : 'running') : 'stopped'}`,
    `outbox=${agent.outbox_depth}`,
    `in_flight=${agent.in_flight}`,
    `marketplace=${marketplace.reachable ? (marketplace.provider_status ?? 'unknown') : 'unreachable'}`,
    `contracts=${marketplace.contracts_by_status ? Object.values(marketplace.contracts_by_status).reduce((sum, count) => sum + count, 0) : '?'}`,
    `tier_limited=${marketplace.tier_limited_contracts ?? '?'}`,
    `attention=${report.attention.map((item) => item.code).join(',') || 'none'}`,
  ]
  return parts.join(' ')
}
