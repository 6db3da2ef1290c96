import {mkdtempSync, rmSync} from 'node:fs'
import {Agent, request} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {execFile} from 'node:child_process'
import {fileURLToPath} from 'node:url'

import {AGENT_PERMISSIONS, signDelegation} from '../../src/core/delegation.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair, keyPairFromSeed, signRequest, type KeyPair} from '../../src/core/signing.js'
import {startMarketplace} from '../../src/marketplace/server.js'
import type {BenchRow, BenchSection} from './types.js'

/**
 * The devnet's throughput for the two requests an agent makes most: an authenticated heartbeat and a
 * pending-provision poll (wait=0), from CLIENTS concurrent keep-alive clients. The clients (signing included) run in
 * a child process, so the server's thread does only the server's work, as it would with remote agents.
 */
const CLIENTS = 16
const SECONDS_PER_FIGURE = 3
const TARGET_PER_SECOND = 4000
const P99_GOAL_MS = 20

interface Load {
  endpoint: string
  seedHex: string
  method: 'GET' | 'POST'
  pathAndQuery: string
  body?: string
}

interface LoadResult {
  perSecond: number
  p50: number
  p99: number
  failures: number
}

function send(agent: Agent, key: KeyPair, load: Load): Promise<number> {
  const endpoint = new URL(load.endpoint)
  const headers: Record<string, string> = {...signRequest(key, {method: load.method, host: endpoint.host, pathAndQuery: load.pathAndQuery, body: load.body})}
  if (load.body !== undefined) headers['content-type'] = 'application/json'
  return new Promise((resolve, reject) => {
    const outgoing = request({agent, host: endpoint.hostname, port: endpoint.port, method: load.method, path: load.pathAndQuery, headers}, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
    })
    outgoing.on('error', reject)
    outgoing.end(load.body)
  })
}

/** The load generator: CLIENTS loops sending the same signed request (fresh nonce each time) until the time is up. */
async function generateLoad(load: Load): Promise<LoadResult> {
  const key = keyPairFromSeed(new Uint8Array(Buffer.from(load.seedHex, 'hex')))
  const agent = new Agent({keepAlive: true, maxSockets: CLIENTS})
  const latencies: number[] = []
  let failures = 0
  const started = performance.now()
  const deadline = started + SECONDS_PER_FIGURE * 1000
  await Promise.all(
    Array.from({length: CLIENTS}, async () => {
      while (performance.now() < deadline) {
        const sent = performance.now()
        const status = await send(agent, key, load)
        latencies.push(performance.now() - sent)
        if (status !== 200) failures++
      }
    }),
  )
  const elapsed = (performance.now() - started) / 1000
  agent.destroy()
  latencies.sort((a, b) => a - b)
  const at = (quantile: number) => latencies[Math.min(latencies.length - 1, Math.floor(quantile * latencies.length))] ?? 0
  return {perSecond: latencies.length / elapsed, p50: at(0.5), p99: at(0.99), failures}
}

// The load generator's process: this same file, started with the load in its environment; it prints its result.
const LOAD_ENV = 'OUTPOST_BENCH_SERVER_LOAD'
const loadFromParent = process.env[LOAD_ENV]
if (loadFromParent) void generateLoad(JSON.parse(loadFromParent) as Load).then((result) => process.stdout.write(JSON.stringify(result)))

function inChildProcess(load: Load): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const args = ['--import', import.meta.resolve('tsx'), fileURLToPath(import.meta.url)]
    execFile(process.execPath, args, {env: {...process.env, [LOAD_ENV]: JSON.stringify(load)}}, (error, stdout) => {
      if (error) reject(error)
      else resolve(JSON.parse(stdout) as LoadResult)
    })
  })
}

export const serverBench: BenchSection = async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'outpost-bench-server-'))
  // The server's own cost per request is measured here, 16 clients on one key: the rate limits would measure themselves.
  const server = await startMarketplace({dataDir, port: 0, host: '127.0.0.1', rateLimitPerSecond: 1e6, addressRateLimitPerSecond: 1e6})
  try {
    const main = generateKeyPair()
    const agentKey = generateKeyPair()
    const pk = toHex(main.publicKey)
    const setup = async (pathAndQuery: string, body: unknown) => {
      const status = await send(new Agent(), main, {endpoint: server.endpoint, seedHex: '', method: 'POST', pathAndQuery, body: JSON.stringify(body)})
      if (status !== 201 && status !== 200) throw new Error(`bench setup: POST ${pathAndQuery} answered ${status}`)
    }
    await setup('/api/v1/providers', {name: 'bench', contact_email: 'bench@example.net'})
    const terms = {agentPubkey: toHex(agentKey.publicKey), permissions: AGENT_PERMISSIONS, expiresAt: null, label: 'bench'}
    await setup(`/api/v1/providers/${pk}/agent-delegations`, {
      agent_pubkey: terms.agentPubkey,
      permissions: AGENT_PERMISSIONS,
      expires_at: null,
      label: 'bench',
      signature: signDelegation(main, terms),
    })

    const common = {endpoint: server.endpoint, seedHex: toHex(agentKey.seed)}
    const loads: [string, Load][] = [
      ['heartbeat', {...common, method: 'POST', pathAndQuery: `/api/v1/providers/${pk}/heartbeat`, body: JSON.stringify({version: 'bench', provisioner_type: 'local', capabilities: [], active_contracts: 0})}],
      ['pending-provision', {...common, method: 'GET', pathAndQuery: `/api/v1/providers/${pk}/contracts/pending-provision?wait=0`}],
    ]
    const rows: BenchRow[] = []
    for (const [name, load] of loads) {
      const cpuBefore = process.cpuUsage()
      const result = await inChildProcess(load)
      const cpu = process.cpuUsage(cpuBefore)
      if (result.failures > 0) throw new Error(`bench ${name}: ${result.failures} requests failed`)
      // The server's own CPU time per request: what one free core could serve, whatever else loads the machine.
      const cpuMicrosPerRequest = (cpu.user + cpu.system) / (result.perSecond * SECONDS_PER_FIGURE)
      const group = `server ${name} (${CLIENTS} clients)`
      const target = `goal ≥ ${TARGET_PER_SECOND} req/s`
      rows.push(
        {group, name: 'authenticated requests', value: Math.round(result.perSecond), unit: 'req/s', ratio: result.perSecond / TARGET_PER_SECOND, note: target},
        {group, name: 'latency p50', value: result.p50, unit: 'ms'},
        {group, name: 'latency p99', value: result.p99, unit: 'ms', ratio: result.p99 / P99_GOAL_MS, note: `goal < ${P99_GOAL_MS} ms`},
        {group, name: 'server CPU per request', value: cpuMicrosPerRequest, unit: 'µs'},
        {group, name: 'one free core could serve', value: Math.round(1e6 / cpuMicrosPerRequest), unit: 'req/s', ratio: 1e6 / cpuMicrosPerRequest / TARGET_PER_SECOND, note: target},
      )
    }
    return rows
  } finally {
    await server.stop()
    rmSync(dataDir, {recursive: true, force: true})
  }
}
