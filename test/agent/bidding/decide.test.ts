import {chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {decideOrder, type DecideContext} from '../../../src/agent/bidding/decide.js'
import type {OpenOrder} from '../../../src/core/api/provider.js'
import {BiddingSection} from '../../../src/core/config/schema.js'

const dir = mkdtempSync(join(tmpdir(), 'outpost-bid-scripts-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

function script(name: string, body: string): string {
  const path = join(dir, name)
  writeFileSync(path, `#!/bin/sh\n${body}\n`)
  chmodSync(path, 0o755)
  return path
}

const order = (overrides: Partial<OpenOrder> = {}, requirements: Partial<OpenOrder['requirements']> = {}): OpenOrder => ({
  order_id: 'a'.repeat(32),
  requirements: {cpu_cores: 2, memory_mb: 2048, storage_gb: 20, gpu_count: 0, ...requirements},
  max_price_per_hour: '1',
  duration_hours: 4,
  closes_at: Date.now() + 60_000,
  ...overrides,
})

const config = BiddingSection.parse({
  enabled: true,
  prices: {cpu_core: '0.1', memory_gb: '0.05', storage_gb: '0.001'},
  filters: {regions: ['eu-central', 'eu-west'], gpu_models: ['a100'], min_duration_hours: 2, max_duration_hours: 48},
})
const capacity = {cpuCores: 8, memoryMb: 16_384, storageGb: 200, gpuCount: 1}
const context = (overrides: Partial<DecideContext> = {}): DecideContext => ({
  config,
  script: undefined,
  capacity,
  committed: {cpuCores: 0, memoryMb: 0, storageGb: 0, gpuCount: 0},
  now: Date.UTC(2026, 10, 21, 6),
  ...overrides,
})

describe('decideOrder: filters and capacity before any price', () => {
  const cases: {name: string; order: OpenOrder; context?: Partial<DecideContext>; reason?: string; price?: string}[] = [
    {name: 'fits everything: bid at the configured price', order: order({region: 'eu-west'}), price: '0.32'},
    {name: 'an order naming no region passes the region filter', order: order(), price: '0.32'},
    {name: 'region not served', order: order({region: 'us-east'}), reason: 'region'},
    {name: 'GPU model not offered', order: order({}, {gpu_count: 1, gpu_model: 'h100'}), reason: 'gpu_model'},
    {name: 'GPU model offered', order: order({}, {gpu_count: 1, gpu_model: 'a100'}), price: '0.32'},
    {name: 'too short', order: order({duration_hours: 1}), reason: 'duration_too_short'},
    {name: 'too long', order: order({duration_hours: 49}), reason: 'duration_too_long'},
    {name: 'no capacity reported', order: order(), context: {capacity: undefined}, reason: 'no_capacity_info'},
    {name: 'larger than the whole provider', order: order({}, {gpu_count: 2, gpu_model: 'a100'}), reason: 'too_large'},
    {name: 'fits the provider, not what is free', order: order(), context: {committed: {cpuCores: 7, memoryMb: 0, storageGb: 0, gpuCount: 0}}, reason: 'no_free_capacity'},
    {name: 'our price above the order max', order: order({max_price_per_hour: '0.319999'}), reason: 'above_max_price'},
    {name: 'our price equal to the order max', order: order({max_price_per_hour: '0.32'}), price: '0.32'},
    {name: 'a price of zero is never bid', order: order(), context: {config: {...config, prices: {cpu_core: '0', memory_gb: '0', storage_gb: '0', gpu: '0'}}}, reason: 'zero_price'},
  ]
  it.each(cases)('$name', async ({order: wanted, context: overrides, reason, price}) => {
    const decision = await decideOrder(wanted, context(overrides))
    if (price) expect(decision).toMatchObject({kind: 'bid', price})
    else expect(decision).toMatchObject({kind: 'declined', reason})
  })
})

describe('decideOrder: the script strategy', () => {
  const scripted = {...config, strategy: 'script' as const}
  it('gives the program the order, the capacity and what is free on stdin, and bids its price (floored)', async () => {
    const input = join(dir, 'input.json')
    const command = script('price.sh', `cat > ${input}\necho '{"price_per_hour": "0.7"}'`)
    const committed = {cpuCores: 2, memoryMb: 1024, storageGb: 0, gpuCount: 0}
    const decision = await decideOrder(order({region: 'eu-west'}), context({config: scripted, script: {command, timeoutMs: 5000}, committed}))
    expect(decision).toMatchObject({kind: 'bid', price: '0.7', why: 'script'})
    const seen = JSON.parse(readFileSync(input, 'utf8')) as Record<string, unknown>
    expect(seen).toMatchObject({
      order: {order_id: 'a'.repeat(32), region: 'eu-west', requirements: {cpu_cores: 2}},
      capacity: {cpu_cores: 8, memory_mb: 16_384, storage_gb: 200, gpu_count: 1},
      free: {cpu_cores: 6, memory_mb: 15_360, storage_gb: 200, gpu_count: 1},
    })
    const floored = await decideOrder(order(), context({config: {...scripted, floor_price: '0.9'}, script: {command, timeoutMs: 5000}}))
    expect(floored).toMatchObject({kind: 'bid', price: '0.9'})
  })

  it.each([
    {name: 'a decline', body: `echo '{"decline": "busy tonight"}'`, reason: 'script_declined', detail: /busy tonight/},
    {name: 'a non-zero exit', body: 'echo oops >&2; exit 3', reason: 'script_failed', detail: /code 3[\s\S]*oops/},
    {name: 'no JSON', body: 'echo fine', reason: 'script_failed', detail: /printed no JSON/},
    {name: 'a wrong answer', body: `echo '{"price": 1}'`, reason: 'script_failed', detail: /answered neither/},
    {name: 'a price above the max', body: `echo '{"price_per_hour": "5"}'`, reason: 'above_max_price', detail: /5 is above/},
  ])('reads $name as a decline', async ({name, body, reason, detail}) => {
    const command = script(`${name.replaceAll(' ', '-')}.sh`, `cat > /dev/null\n${body}`)
    const decision = await decideOrder(order(), context({config: scripted, script: {command, timeoutMs: 5000}}))
    expect(decision).toMatchObject({kind: 'declined', reason})
    expect(decision.kind === 'declined' ? decision.detail : '').toMatch(detail)
  })

  it('kills a program that outlives its timeout and declines the order', async () => {
    const command = script('slow.sh', 'sleep 30')
    const started = Date.now()
    const decision = await decideOrder(order(), context({config: scripted, script: {command, timeoutMs: 300}}))
    expect(decision).toMatchObject({kind: 'declined', reason: 'script_failed'})
    expect(decision.kind === 'declined' ? decision.detail : '').toMatch(/timed out/)
    expect(Date.now() - started).toBeLessThan(2500)
  })

  it('runs no program for an order the filters decline', async () => {
    const marker = join(dir, 'ran')
    const command = script('marker.sh', `touch ${marker}\necho '{"price_per_hour": "0.5"}'`)
    const decision = await decideOrder(order({region: 'us-east'}), context({config: scripted, script: {command, timeoutMs: 5000}}))
    expect(decision).toMatchObject({kind: 'declined', reason: 'region'})
    expect(() => readFileSync(marker)).toThrow()
  })
})
