import {execFileSync} from 'node:child_process'
import {closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {
  fastAgentEnv,
  initProvider,
  instanceProcesses,
  killInstances,
  renter,
  startAgent,
  startDevnet,
  waitFor,
  type AgentProcess,
  type Devnet,
  type ProviderSetup,
} from '../support/marketplace.js'
import {billing, outboxEntries, readMarketplace, settleRunning} from '../support/agent-run.js'

/**
 * The agent's state dir on a 2 MB filesystem (a tmpfs: mounting needs root) that fills up while it works. Out of space
 * is an operating condition: one clear log line, no new contracts taken, running ones kept and ended, reports sent
 * from memory, a restart that comes up, and recovery on its own once there is room. No stack trace, no report lost.
 */

const root = process.getuid?.() === 0

let devnet: Devnet
let provider: ProviderSetup
let mount: string
let mounted = false
const ids: string[] = []
const logDir = mkdtempSync(join(tmpdir(), 'outpost-agent-disk-full-'))
let agent: AgentProcess | undefined

beforeAll(async () => {
  if (!root) return
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
  mount = mkdtempSync(join(tmpdir(), 'outpost-small-disk-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', mount])
  mounted = true
})

afterAll(async () => {
  agent?.kill('SIGKILL')
  await agent?.exited
  killInstances(ids)
  // Workloads keep their log files on the small disk open until they are gone.
  await waitFor(() => instanceProcesses(ids).size === 0, 10_000)
  if (mounted) execFileSync('umount', ['--lazy', mount])
  if (mount) rmSync(mount, {recursive: true, force: true})
  await devnet?.stop()
  rmSync(provider?.configDir ?? '/nonexistent', {recursive: true, force: true})
  rmSync(logDir, {recursive: true, force: true})
})

/** Writes until the filesystem refuses another byte. */
function fill(path: string): void {
  const fd = openSync(path, 'w')
  try {
    for (const size of [65_536, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size, 1)
      for (;;) {
        try {
          writeSync(fd, chunk)
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break
          throw error
        }
      }
    }
  } finally {
    closeSync(fd)
  }
}

const statusOf = (id: string) => readMarketplace(devnet.dataDir).contracts.get(id)?.status

describe.skipIf(!root)('outpost run with a full state disk', () => {
  it('takes no new work, keeps and ends what runs, survives a restart, and recovers by itself', {timeout: 240_000}, async () => {
    const stateDir = join(mount, 'state')
    mkdirSync(stateDir, {mode: 0o700})
    const env = fastAgentEnv(provider.configDir, {OUTPOST_AGENT_STATE_DIR: stateDir})
    const logFile = join(logDir, 'agent.log')
    const tail = () => readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n')
    const fullLines = () => readFileSync(logFile, 'utf8').split('\n').filter((line) => line.includes('the state disk is full'))
    agent = startAgent(env, logFile)
    const buyer = renter(devnet.endpoint)
    const running: string[] = []
    for (let index = 0; index < 3; index++) running.push((await buyer.create(provider.offeringId)).contract_id)
    ids.push(...running)
    expect(await settleRunning(devnet.dataDir, running, new Set(), 60_000), tail()).toEqual([])

    const filler = join(mount, 'filler')
    fill(filler)
    // Usage is billed every 2 s: its records soon meet the full disk.
    expect(await waitFor(() => fullLines().length === 1, 30_000), tail()).toBe(true)
    const line = JSON.parse(fullLines()[0] ?? '{}') as {path?: string; free_bytes?: number; level?: number}
    expect(line.path).toContain(stateDir)
    expect(typeof line.free_bytes).toBe('number')

    // While full: new contracts wait; a cancelled one is still ended, and its reports (from memory) reach the marketplace.
    const waiting: string[] = []
    for (let index = 0; index < 2; index++) waiting.push((await buyer.create(provider.offeringId)).contract_id)
    ids.push(...waiting)
    const cancelled = new Set([running[0] ?? ''])
    await buyer.cancel(running[0] ?? '')
    expect(await settleRunning(devnet.dataDir, running, cancelled, 60_000), tail()).toEqual([])
    for (const id of waiting) expect(statusOf(id), id).toBe('accepted')

    // A restart on the full disk comes up and runs (it used to exit 70 writing agent.pid), and stops cleanly.
    agent.kill('SIGTERM')
    expect((await agent.exited).code, tail()).toBe(0)
    agent = startAgent(env, logFile)
    expect(await waitFor(() => agent?.logLines().filter((entry) => entry.msg === 'the marketplace acknowledged the heartbeat').length === 2, 60_000), tail()).toBe(true)
    expect(await waitFor(() => fullLines().length === 2, 30_000), tail()).toBe(true)
    for (const id of waiting) expect(statusOf(id), id).toBe('accepted')

    // Room again: the agent notices by itself and takes the waiting contracts.
    rmSync(filler)
    expect(await waitFor(() => readFileSync(logFile, 'utf8').includes('the state disk has room again'), 30_000), tail()).toBe(true)
    const all = [...running, ...waiting]
    expect(await settleRunning(devnet.dataDir, all, cancelled, 60_000), tail()).toEqual([])
    for (const id of all) if (!cancelled.has(id)) await buyer.cancel(id)
    expect(await settleRunning(devnet.dataDir, all, new Set(all), 60_000), tail()).toEqual([])
    expect(await waitFor(() => outboxEntries(stateDir).length === 0, 30_000), tail()).toBe(true)
    const billed = billing(devnet.dataDir, all)
    expect(billed.gaps, tail()).toEqual([])
    agent.kill('SIGTERM')
    expect((await agent.exited).code, tail()).toBe(0)
    agent = undefined

    const log = readFileSync(logFile, 'utf8')
    expect(log).not.toMatch(/^\s+at /m)
    expect(log).not.toContain('"level":60')
    console.log(`disk-full run: ${JSON.stringify({contracts: all.length, waited_while_full: waiting.length, full_lines: fullLines().length, ...billed})}`)
  })
})
