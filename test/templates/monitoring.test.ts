import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {execa} from 'execa'
import {describe, expect, it} from 'vitest'

import {createMetrics, registerGpuMetrics} from '../../src/agent/metrics.js'
import {REPO_ROOT} from '../support/cli.js'

/** The alerting rules and the Grafana dashboard Outpost ships: checked by promtool, and naming only metrics the agent exports. */

const RULES = join(REPO_ROOT, 'templates', 'monitoring', 'outpost-alerts.yml')
const RULE_TESTS = join(REPO_ROOT, 'test', 'templates', 'monitoring', 'outpost-alerts.test.yml')
const DASHBOARD = join(REPO_ROOT, 'templates', 'monitoring', 'outpost-dashboard.json')

async function promtool(args: string[], cwd = REPO_ROOT): Promise<{exitCode: number; output: string}> {
  const result = await execa('promtool', args, {reject: false, cwd})
  return {exitCode: result.exitCode ?? -1, output: `${String(result.stdout)}${String(result.stderr)}`}
}

/** Each rule's name and expression (one line each in this file: promtool checks that the file is what it seems). */
const rules = [...readFileSync(RULES, 'utf8').matchAll(/- alert: (\w+)\n\s+expr: (.+)\n/g)].map(([, alert = '', expr = '']) => ({alert, expr}))

interface DashboardPanel {
  type: string
  targets?: {expr: string}[]
}
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {panels: DashboardPanel[]; templating: {list: {definition?: string}[]}}

/** The outpost_agent_* names a PromQL expression reads, a histogram's or summary's series named by their base metric. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\boutpost_agent_[a-z0-9_]+/g)].map(([name]) => name)
}

/** Every metric name the agent's registry exports (bidding and GPU metrics on), with a histogram's series names. */
async function exportedNames(): Promise<Set<string>> {
  const metrics = createMetrics({bidding: true, stateDir: mkdtempSync(join(tmpdir(), 'outpost-metrics-'))})
  registerGpuMetrics(metrics.registry, async () => [])
  const names = new Set<string>()
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    names.add(metric.name)
    if (String(metric.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`)
  }
  return names
}

describe('alerting rules (templates/monitoring/outpost-alerts.yml)', () => {
  it('pass promtool check rules', async () => {
    const checked = await promtool(['check', 'rules', RULES])
    expect(checked.exitCode, checked.output).toBe(0)
    expect(checked.output).toContain('SUCCESS: 8 rules found')
  })

  it("pass their unit tests (promtool test rules), and the tests fail when a rule's threshold is wrong", async () => {
    const tested = await promtool(['test', 'rules', RULE_TESTS])
    expect(tested.exitCode, tested.output).toBe(0)
    expect(tested.output).toContain('SUCCESS')

    const dir = mkdtempSync(join(tmpdir(), 'outpost-rules-'))
    writeFileSync(join(dir, 'rules.yml'), readFileSync(RULES, 'utf8').replace('time() - outpost_agent_last_heartbeat_timestamp_seconds > 300', 'time() - outpost_agent_last_heartbeat_timestamp_seconds > 3000'))
    writeFileSync(join(dir, 'tests.yml'), readFileSync(RULE_TESTS, 'utf8').replace('../../../templates/monitoring/outpost-alerts.yml', 'rules.yml'))
    const broken = await promtool(['test', 'rules', 'tests.yml'], dir)
    expect(broken.exitCode).toBe(1)
    expect(broken.output).toContain('alertname: OutpostHeartbeatStale')
  })

  it('cover what an operator is paged for', () => {
    expect(rules.map((rule) => rule.alert).sort()).toEqual(
      ['OutpostAgentDown', 'OutpostDelegationExpiring', 'OutpostHeartbeatStale', 'OutpostOutboxGrowing', 'OutpostProvisioningFailures', 'OutpostStateDiskFull', 'OutpostStateDiskLow', 'OutpostTierLimitReached'].sort(),
    )
  })
})

describe('every metric the rules and the dashboard read is one the agent exports', () => {
  it('in the rules (and `up`, which Prometheus itself writes, is the only other series)', async () => {
    const exported = await exportedNames()
    const read = rules.flatMap((rule) => metricNames(rule.expr))
    expect(read.length).toBeGreaterThan(7)
    expect(read.filter((name) => !exported.has(name))).toEqual([])
    const others = rules.flatMap((rule) => [...rule.expr.matchAll(/\b([a-z_][a-z0-9_]*)\s*[{[]/g)].map(([, name]) => name)).filter((name) => name !== undefined && !name.startsWith('outpost_agent_'))
    expect(new Set(others)).toEqual(new Set(['up']))
  })

  it('in the dashboard, where every panel but a row has a query', async () => {
    const exported = await exportedNames()
    const panels = dashboard.panels.filter((panel) => panel.type !== 'row')
    expect(panels.every((panel) => (panel.targets ?? []).length > 0)).toBe(true)
    const read = [...panels.flatMap((panel) => (panel.targets ?? []).flatMap((target) => metricNames(target.expr))), ...dashboard.templating.list.flatMap((variable) => metricNames(variable.definition ?? ''))]
    expect(new Set(read).size).toBeGreaterThan(20)
    expect([...new Set(read)].filter((name) => !exported.has(name))).toEqual([])
    // The new gauges are there, so the alerts above have something to read.
    for (const name of ['outpost_agent_delegation_expiry_timestamp_seconds', 'outpost_agent_state_disk_free_bytes', 'outpost_agent_chores_total']) expect(exported.has(name)).toBe(true)
  })

  it('the check can fail: a name the agent does not export is found', async () => {
    const exported = await exportedNames()
    expect(metricNames('rate(outpost_agent_made_up_total[5m]) + outpost_agent_outbox_depth').filter((name) => !exported.has(name))).toEqual(['outpost_agent_made_up_total'])
  })
})
