import Database from 'better-sqlite3'
import {chmodSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {BidPreview} from '../../src/agent/bidding/preview.js'
import {cancelContract, createOrder, getContract, getOrder, type NewOrder, type RenterOrder} from '../../src/core/api/renter.js'
import {readKeyFile} from '../../src/core/keys.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {parseJson, runCli} from '../support/cli.js'
import {RENTER_SSH_KEY} from '../support/ssh-keys.js'
import {client, fastAgentEnv, initProvider, killInstances, metricsUrl, startAgent, startDevnet, waitFor, type Devnet, type ProviderSetup} from '../support/marketplace.js'

/** §11 end to end: the built CLI's agent bids on a real devnet's orders, wins, and provisions what it won. */

let devnet: Devnet
const configDirs: string[] = []
const contractIds: string[] = []
const scratch = mkdtempSync(join(tmpdir(), 'outpost-bidding-e2e-'))
const SSH_KEY = RENTER_SSH_KEY

beforeAll(async () => {
  devnet = await startDevnet()
})

afterAll(async () => {
  killInstances(contractIds)
  await devnet?.stop()
  for (const dir of configDirs) rmSync(dir, {recursive: true, force: true})
  rmSync(scratch, {recursive: true, force: true})
})

/** [bidding] through OUTPOST_* variables, as an operator could set it. */
function biddingEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    OUTPOST_BIDDING_ENABLED: 'true',
    OUTPOST_BIDDING_STRATEGY: 'fixed',
    OUTPOST_BIDDING_PRICES_CPU_CORE: '0.1',
    OUTPOST_BIDDING_PRICES_MEMORY_GB: '0.05',
    OUTPOST_BIDDING_PRICES_STORAGE_GB: '0.001',
    OUTPOST_BIDDING_FILTERS_REGIONS: '["eu-central", "eu-west"]',
    OUTPOST_BIDDING_FILTERS_GPU_MODELS: '["a100"]',
    OUTPOST_BIDDING_FILTERS_MAX_DURATION_HOURS: '24',
    ...overrides,
  }
}

const small = {cpu_cores: 1, memory_mb: 512, storage_gb: 1}

async function provider(): Promise<ProviderSetup> {
  const setup = await initProvider(devnet.endpoint)
  configDirs.push(setup.configDir)
  return setup
}

describe('outpost run with [bidding] against a devnet', () => {
  it('bids on the orders that fit at the configured price, declines the others with the reason, and provisions the order it won', {timeout: 60_000}, async () => {
    const setup = await provider()
    const env = {...fastAgentEnv(setup.configDir), ...biddingEnv()}
    const agent = startAgent(env, join(scratch, 'agent-fit.log'))
    try {
      const metrics = await metricsUrl(agent)
      // The renter side through the CLI: its key lives in the devnet data dir.
      const dataDir = join(scratch, 'renter')
      const created = await runCli(
        ['devnet', 'order', 'create', '--endpoint', devnet.endpoint, '--data-dir', dataDir, '--cpu-cores', '1', '--memory-mb', '512', '--storage-gb', '1', '--max-price', '0.5', '--region', 'eu-central', '--closes-in', '8s', '--ssh-pubkey', SSH_KEY, '--json'],
      )
      expect(created.exitCode, created.stderr).toBe(0)
      const fitting = parseJson<RenterOrder>(created)
      expect(fitting).toMatchObject({status: 'open', requirements: {cpu_cores: 1, memory_mb: 512, storage_gb: 1, gpu_count: 0}, region: 'eu-central', max_price_per_hour: '0.5'})
      const renter = client(devnet.endpoint, await readKeyFile(join(dataDir, 'renter.key')))
      const open = (order: Partial<NewOrder>, requirements: Partial<NewOrder['requirements']> = {}) =>
        createOrder(renter, {requirements: {...small, ...requirements}, max_price_per_hour: '0.5', duration_hours: 1, closes_in_seconds: 8, ssh_pubkey: SSH_KEY, ...order})
      const declined = {
        region: await open({region: 'us-east'}),
        duration_too_long: await open({duration_hours: 48}),
        above_max_price: await open({max_price_per_hour: '0.125999'}),
        too_large: await open({}, {cpu_cores: 4096}),
        gpu_model: await open({}, {gpu_count: 1, gpu_model: 'h100'}),
      }

      // The dry run decides as the agent does, bidding nothing.
      const preview = await runCli(['bid', 'preview', '--json'], {env: {...env, OUTPOST_METRICS_LISTEN: undefined}})
      expect(preview.exitCode, preview.stderr).toBe(0)
      const previewed = parseJson<BidPreview>(preview).orders
      expect(previewed.find((order) => order.order_id === fitting.order_id)).toMatchObject({decision: 'bid', price_per_hour: '0.126', why: 'fixed: base 0.126'})
      for (const [reason, order] of Object.entries(declined)) {
        expect(previewed.find((entry) => entry.order_id === order.order_id), reason).toMatchObject({decision: 'declined', reason})
      }

      const decisions = () => agent.logLines().filter((line) => line.decision !== undefined)
      const allDecided = await waitFor(() => [fitting, ...Object.values(declined)].every((order) => decisions().some((line) => line.order_id === order.order_id)), 20_000)
      expect(allDecided, JSON.stringify(decisions())).toBe(true)
      expect(decisions().filter((line) => line.order_id === fitting.order_id)).toEqual([
        expect.objectContaining({decision: 'bid', price_per_hour: '0.126', why: 'fixed: base 0.126', msg: expect.stringContaining('bid 0.126/h')}),
      ])
      for (const [reason, order] of Object.entries(declined)) {
        expect(decisions().filter((line) => line.order_id === order.order_id), reason).toEqual([expect.objectContaining({decision: 'declined', reason})])
      }
      const bids = (await getOrder(renter, fitting.order_id)).bids ?? []
      expect(bids).toEqual([expect.objectContaining({provider_pubkey: setup.providerPubkey, price_per_hour: '0.126', status: 'open'})])
      for (const order of Object.values(declined)) expect((await getOrder(renter, order.order_id)).bids).toEqual([])

      // At closes_at the bid wins; the running agent provisions the contract like any other.
      let contractId: string | undefined
      expect(await waitFor(async () => (contractId = (await getOrder(renter, fitting.order_id)).contract_id ?? undefined) !== undefined, 20_000)).toBe(true)
      contractIds.push(contractId!)
      const provisioned = await waitFor(async () => ['provisioned', 'active'].includes((await getContract(renter, contractId!)).status), 20_000)
      expect(provisioned).toBe(true)
      const contract = await getContract(renter, contractId!)
      expect(contract).toMatchObject({provider_pubkey: setup.providerPubkey, offering_id: fitting.order_id, price_per_hour: '0.126', instance: {external_id: `outpost-${contractId}`}})
      // The engine learns of the win when its read of open orders ends at the close (whole seconds): soon, not at once.
      const wonLogged = () => agent.logLines().some((line) => line.order_id === fitting.order_id && line.contract_id === contractId && String(line.msg).includes('won the order'))
      expect(await waitFor(wonLogged, 10_000)).toBe(true)
      const shown = await runCli(['devnet', 'order', 'show', fitting.order_id, '--endpoint', devnet.endpoint, '--data-dir', dataDir])
      expect(shown.stdout).toContain(`order ${fitting.order_id}: awarded`)
      expect(shown.stdout).toContain(`bid 0.126/h by ${setup.providerPubkey} (won)`)
      expect(shown.stdout).toContain(`contract ${contractId}`)

      const text = await (await fetch(metrics)).text()
      expect(text).toMatch(/outpost_agent_bid_decisions_total\{decision="bid",reason="fixed"\} 1\b/)
      for (const reason of Object.keys(declined)) expect(text).toMatch(new RegExp(`outpost_agent_bid_decisions_total\\{decision="declined",reason="${reason}"\\} 1\\b`))
      expect(text).toMatch(/outpost_agent_bid_outcomes_total\{outcome="won"\} 1\b/)
    } finally {
      agent.kill('SIGTERM')
    }
    expect((await agent.exited).code).toBe(0)
  })

  it('with capacity for 3 machines never holds more than 3 won-but-unprovisioned orders across 200 random orders', {timeout: 90_000}, async () => {
    const setup = await provider()
    // A backend with room for exactly 3 machines of 1 core, 1 GiB, 10 GB; provisioning takes a while, so wins pile up.
    const backend = join(scratch, 'backend.sh')
    writeFileSync(
      backend,
      `#!/bin/sh
input=$(cat)
case "$1" in
  provision) sleep 0.4; name=$(printf '%s' "$input" | grep -o '"instance_name":"[^"]*"' | head -1 | cut -d'"' -f4)
    echo "{\\"external_id\\":\\"$name\\",\\"ip_address\\":\\"127.0.0.1\\",\\"ssh_port\\":22}" ;;
  find) echo '{"instance":null}' ;;
  terminate) echo '{"terminated":true}' ;;
  health) echo '{"status":"healthy"}' ;;
  list) echo '{"instances":[]}' ;;
  capacity) echo '{"capacity":{"cpu_cores":3,"memory_mb":3072,"storage_gb":30,"gpu_count":0}}' ;;
  *) echo '{"checks":[]}' ;;
esac
`,
    )
    chmodSync(backend, 0o755)
    const env = {...fastAgentEnv(setup.configDir), ...biddingEnv(), OUTPOST_PROVISIONER_TYPE: 'script', OUTPOST_PROVISIONER_SCRIPT_COMMAND: backend}
    const agent = startAgent(env, join(scratch, 'agent-random.log'))
    const db = new Database(join(devnet.dataDir, 'marketplace.sqlite'), {readonly: true, fileMustExist: true})
    try {
      await metricsUrl(agent)
      const renter = client(devnet.endpoint, generateKeyPair())
      const random = seeded(20261121)
      const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!
      const machine = {cpu_cores: 1, memory_mb: 1024, storage_gb: 10}
      const held = db.prepare<[string], {unprovisioned: number | null; held: number | null}>(
        `SELECT sum(status IN ('accepted', 'provisioning')) AS unprovisioned, sum(status IN ('accepted', 'provisioning', 'provisioned', 'active')) AS held
         FROM contracts WHERE provider_pubkey = ?`,
      )
      const running = db.prepare<[string], string>("SELECT contract_id FROM contracts WHERE provider_pubkey = ? AND status IN ('provisioned', 'active')").pluck()
      let most = {unprovisioned: 0, held: 0}
      const cancelled = new Set<string>()
      // Samples the marketplace's view, and frees capacity: the renter cancels each machine once it is up.
      const watch = async () => {
        const now = held.get(setup.providerPubkey)
        most = {unprovisioned: Math.max(most.unprovisioned, now?.unprovisioned ?? 0), held: Math.max(most.held, now?.held ?? 0)}
        for (const id of running.all(setup.providerPubkey)) {
          if (cancelled.has(id)) continue
          cancelled.add(id)
          await cancelContract(renter, id).catch(() => undefined)
        }
      }
      const watcher = setInterval(() => void watch(), 50)

      const orders: {order: RenterOrder; wanted: NewOrder}[] = []
      try {
        for (let index = 0; index < 200; index++) {
          const wanted: NewOrder = {
            requirements: machine,
            max_price_per_hour: pick(['0.1', '0.2', '0.5']),
            duration_hours: pick([1, 2, 48]),
            ...(random() < 0.8 ? {region: pick(['eu-central', 'eu-west', 'us-east'])} : {}),
            closes_in_seconds: 2 + Math.floor(random() * 3),
            ssh_pubkey: SSH_KEY,
          }
          orders.push({order: await createOrder(renter, wanted), wanted})
          await new Promise((resolve) => setTimeout(resolve, 60))
        }
        const lastClose = Math.max(...orders.map(({order}) => order.closes_at))
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, lastClose - Date.now()) + 500))
        // Every won contract ends provisioned by the agent (and then cancelled by the watcher).
        const wonIds = () => db.prepare<[string], string>('SELECT contract_id FROM contracts WHERE provider_pubkey = ?').pluck().all(setup.providerPubkey)
        const allProvisioned = await waitFor(() => {
          const unprovisioned = db.prepare<[string], number>('SELECT count(*) FROM contracts WHERE provider_pubkey = ? AND provisioned_at IS NULL').pluck().get(setup.providerPubkey)
          return unprovisioned === 0
        }, 20_000)
        expect(allProvisioned).toBe(true)
        contractIds.push(...wonIds())
        expect(wonIds().length).toBeGreaterThan(3)
      } finally {
        clearInterval(watcher)
      }

      expect(most.unprovisioned).toBeGreaterThan(0)
      expect(most.unprovisioned).toBeLessThanOrEqual(3)
      expect(most.held).toBeLessThanOrEqual(3)

      // Every order got a decision; those the filters or the price rule out, the right reason; a bid only at 0.16.
      const lines = agent.logLines().filter((line) => line.decision !== undefined)
      for (const {order, wanted} of orders) {
        const mine = lines.filter((line) => line.order_id === order.order_id)
        expect(mine.length, order.order_id).toBeGreaterThan(0)
        expect(mine.filter((line) => line.decision === 'bid').length).toBeLessThanOrEqual(1)
        const first = mine[0]!
        if (wanted.region === 'us-east') expect(first.reason).toBe('region')
        else if (wanted.duration_hours === 48) expect(first.reason).toBe('duration_too_long')
        else if (wanted.max_price_per_hour === '0.1') expect(['above_max_price', 'no_free_capacity']).toContain(first.reason)
        else expect(first.decision === 'bid' ? first.price_per_hour : first.reason).toMatch(/^(0\.16|no_free_capacity)$/)
      }
    } finally {
      db.close()
      agent.kill('SIGTERM')
    }
    expect((await agent.exited).code).toBe(0)
  })
})

/** A small seeded generator (mulberry32), so a failing run can be repeated. */
function seeded(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}
