import {execFile, spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {Agent, request} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {fileURLToPath} from 'node:url'

import {AGENT_PERMISSIONS, signDelegation} from '../../src/core/delegation.js'
import {toHex} from '../../src/core/hex.js'
import {generateKeyPair, keyPairFromSeed, randomHex, sha256Hex, signRequest, type KeyPair} from '../../src/core/signing.js'
import {startMarketplace} from '../../src/marketplace/server.js'
import type {BenchRow, BenchSection} from './types.js'

/**
 * The devnet under abuse (issue 15, items 10 and 11), with its default limits: the latency of a public GET while a
 * flood runs beside it, against the same probe on a quiet server. The flood is what took the old devnet from 2 ms
 * to 588 ms: self-registered providers sending bad benchmark reports back to back, and agent keys holding as many
 * long polls as they can. It comes from another loopback address (127.0.0.2) than the probe (127.0.0.1), as an
 * abuser and a renter would; both run in child processes, so the server's thread does only the server's work.
 */
const PROBE_SECONDS = 10
/** Probe clients, each sending its next GET 10 ms after the last answer: well under the per-address limit. */
const PROBE_CLIENTS = 2
const PROBE_PAUSE_MS = 10
const FLOOD_PROVIDERS = 8
/** Long polls each flooding agent key keeps asking for (4 are held per key by default; the rest are refused). */
const FLOOD_POLLS_PER_KEY = 8
const GOAL_RATIO = 2
/** The flood says it is at full strength (every report loop has had an answer, so the verifier runs) with this line. */
const FLOOD_READY = 'flooding'

interface Party {
  main: string
  agent: string
  pk: string
}

interface ProbeResult {
  samples: number
  p50: number
  p99: number
  failures: number
}

interface FloodResult {
  sent: number
  byStatus: Record<string, number>
}

type Job = {kind: 'probe'; endpoint: string} | {kind: 'flood'; endpoint: string; parties: Party[]}

function call(agent: Agent, endpoint: URL, method: string, path: string, key?: KeyPair, body?: string, localAddress?: string): Promise<{status: number; text: string}> {
  const headers: Record<string, string> = key ? {...signRequest(key, {method, host: endpoint.host, pathAndQuery: path, body})} : {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  return new Promise((resolve, reject) => {
    const outgoing = request({agent, host: endpoint.hostname, port: endpoint.port, method, path, headers, localAddress}, (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (text += chunk))
      response.on('end', () => resolve({status: response.statusCode ?? 0, text}))
    })
    outgoing.on('error', reject)
    outgoing.end(body)
  })
}

function percentile(sorted: number[], quantile: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(quantile * sorted.length))] ?? 0
}

/** Public GETs from 127.0.0.1, paced, for PROBE_SECONDS. */
async function probe(endpoint: URL): Promise<ProbeResult> {
  const agent = new Agent({keepAlive: true, maxSockets: PROBE_CLIENTS})
  const latencies: number[] = []
  let failures = 0
  const deadline = performance.now() + PROBE_SECONDS * 1000
  await Promise.all(
    Array.from({length: PROBE_CLIENTS}, async () => {
      while (performance.now() < deadline) {
        const sent = performance.now()
        const {status} = await call(agent, endpoint, 'GET', '/api/v1/offerings', undefined, undefined, '127.0.0.1')
        latencies.push(performance.now() - sent)
        if (status !== 200) failures++
        await new Promise((resolve) => setTimeout(resolve, PROBE_PAUSE_MS))
      }
    }),
  )
  agent.destroy()
  latencies.sort((a, b) => a - b)
  return {samples: latencies.length, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), failures}
}

/**
 * Bad benchmark reports back to back, one loop per provider, and as many held long polls as each agent key can get,
 * until `stop` resolves (its held polls end with the process). Says FLOOD_READY once every report loop had an answer.
 */
async function flood(endpoint: URL, parties: Party[], stop: Promise<void>): Promise<FloodResult> {
  const agent = new Agent({keepAlive: true, maxSockets: 1000})
  const byStatus: Record<string, number> = {}
  let sent = 0
  let stopped = false
  void stop.then(() => (stopped = true))
  const count = (status: number) => {
    sent++
    byStatus[status] = (byStatus[status] ?? 0) + 1
  }
  let answered = 0
  const reports = parties.map(async (party) => {
    const key = keyPairFromSeed(Buffer.from(party.agent, 'hex'))
    const path = `/api/v1/providers/${party.pk}/benchmarks`
    let challengeId = randomHex(16)
    for (let round = 0; !stopped; round++) {
      const challenge = await call(agent, endpoint, 'POST', `${path}/challenges`, key, undefined, '127.0.0.2')
      count(challenge.status)
      if (challenge.status === 201) challengeId = (JSON.parse(challenge.text) as {challenge_id: string}).challenge_id
      const body = JSON.stringify({challenge_id: challengeId, machine: {}, results: {}, work_digest: sha256Hex(randomHex(8))})
      count((await call(agent, endpoint, 'POST', path, key, body, '127.0.0.2')).status)
      if (round === 0 && ++answered === parties.length) process.stdout.write(FLOOD_READY + '\n')
    }
  })
  for (const party of parties) {
    const key = keyPairFromSeed(Buffer.from(party.agent, 'hex'))
    for (let index = 0; index < FLOOD_POLLS_PER_KEY; index++) {
      void (async () => {
        while (!stopped) count((await call(agent, endpoint, 'GET', '/api/v1/orders?wait=30', key, undefined, '127.0.0.2')).status)
      })().catch(() => undefined)
    }
  }
  await Promise.all(reports)
  return {sent, byStatus}
}

// The child processes: this same file, started with its job in the environment; it prints its result.
const JOB_ENV = 'OUTPOST_BENCH_ABUSE_JOB'
const jobFromParent = process.env[JOB_ENV]
if (jobFromParent) {
  const job = JSON.parse(jobFromParent) as Job
  const endpoint = new URL(job.endpoint)
  // The flood runs until the parent closes its stdin.
  const stop = new Promise<void>((resolve) => process.stdin.on('end', resolve).resume())
  const work = job.kind === 'probe' ? probe(endpoint) : flood(endpoint, job.parties, stop)
  void work.then((result) => {
    process.stdout.write(JSON.stringify(result) + '\n')
    process.exit(0)
  })
}

function inChildProcess<T>(job: Job): Promise<T> {
  return new Promise((resolve, reject) => {
    const args = ['--import', import.meta.resolve('tsx'), fileURLToPath(import.meta.url)]
    const child = execFile(process.execPath, args, {env: {...process.env, [JOB_ENV]: JSON.stringify(job)}, maxBuffer: 16 * 1024 * 1024}, (error, stdout) => {
      if (error) reject(error)
      else resolve(JSON.parse(stdout) as T)
    })
    child.stdin?.end()
  })
}

/** Starts the flood; resolves once it is at full strength, with a function that stops it and gives its counts. */
async function startFlood(job: Job): Promise<() => Promise<FloodResult>> {
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), fileURLToPath(import.meta.url)], {
    env: {...process.env, [JOB_ENV]: JSON.stringify(job)},
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines = createInterface({input: child.stdout})
  const next = () =>
    new Promise<string>((resolve, reject) => {
      lines.once('line', resolve)
      child.once('exit', (code) => reject(new Error(`bench abuse: the flood exited (${code})`)))
    })
  if ((await next()) !== FLOOD_READY) throw new Error('bench abuse: the flood did not start')
  return async () => {
    const result = next()
    child.stdin.end()
    return JSON.parse(await result) as FloodResult
  }
}

/** Registers a provider with one agent key, from the flood's own address. */
async function register(endpoint: URL): Promise<Party> {
  const agent = new Agent({keepAlive: true})
  const main = generateKeyPair()
  const agentKey = generateKeyPair()
  const pk = toHex(main.publicKey)
  const registered = await call(agent, endpoint, 'POST', '/api/v1/providers', main, JSON.stringify({name: 'abuser', contact_email: 'abuse@example.net'}), '127.0.0.2')
  const terms = {agentPubkey: toHex(agentKey.publicKey), permissions: AGENT_PERMISSIONS, expiresAt: null, label: 'abuser'}
  const body = JSON.stringify({agent_pubkey: terms.agentPubkey, permissions: AGENT_PERMISSIONS, expires_at: null, label: 'abuser', signature: signDelegation(main, terms)})
  const delegated = await call(agent, endpoint, 'POST', `/api/v1/providers/${pk}/agent-delegations`, main, body, '127.0.0.2')
  agent.destroy()
  if (registered.status !== 201 || delegated.status !== 201) throw new Error(`bench abuse setup: ${registered.status} ${delegated.status}`)
  return {main: toHex(main.seed), agent: toHex(agentKey.seed), pk}
}

export const abuseBench: BenchSection = async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'outpost-bench-abuse-'))
  const server = await startMarketplace({dataDir, port: 0, host: '127.0.0.1', logError: () => undefined})
  try {
    const endpoint = new URL(server.endpoint)
    const parties: Party[] = []
    for (let index = 0; index < FLOOD_PROVIDERS; index++) parties.push(await register(endpoint))

    const quiet = await inChildProcess<ProbeResult>({kind: 'probe', endpoint: server.endpoint})
    const stopFlood = await startFlood({kind: 'flood', endpoint: server.endpoint, parties})
    const heldDuringProbe = server.heldLongPolls
    const loud = await inChildProcess<ProbeResult>({kind: 'probe', endpoint: server.endpoint})
    const flood = await stopFlood()
    if (quiet.failures > 0 || loud.failures > 0) throw new Error(`bench abuse: the probe failed ${quiet.failures} quiet and ${loud.failures} flooded requests`)

    const group = 'devnet under abuse (default limits)'
    const statuses = Object.entries(flood.byStatus)
      .map(([status, count]) => `${count} × ${status}`)
      .join(', ')
    return [
      {group, name: 'public GET p50, quiet', value: quiet.p50, unit: 'ms', note: `${quiet.samples} requests`},
      {group, name: 'public GET p99, quiet', value: quiet.p99, unit: 'ms'},
      {group, name: 'public GET p50, under flood', value: loud.p50, unit: 'ms', ratio: loud.p50 / quiet.p50, note: `against quiet p50; ${loud.samples} requests`},
      {group, name: 'public GET p99, under flood', value: loud.p99, unit: 'ms', ratio: loud.p99 / quiet.p99, note: `against quiet p99: goal < ${GOAL_RATIO} ×`},
      {group, name: 'flood requests answered', value: flood.sent, unit: 'req', note: statuses},
      {group, name: 'long polls held during the probe', value: heldDuringProbe, unit: 'polls', note: `${FLOOD_PROVIDERS} keys × ${FLOOD_POLLS_PER_KEY} asked`},
    ] satisfies BenchRow[]
  } finally {
    await server.stop()
    rmSync(dataDir, {recursive: true, force: true})
  }
}
