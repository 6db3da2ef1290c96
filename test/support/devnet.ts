import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import type {Clock} from '../../src/marketplace/clock.js'
import {startMarketplace, type MarketplaceOptions, type MarketplaceServer} from '../../src/marketplace/server.js'
import {BIN, REPO_ROOT} from './cli.js'

/** A clock the test moves forward; signed requests use it too, so they stay inside the timestamp window. */
export class TestClock implements Clock {
  private offset = 0

  now(): number {
    return Date.now() + this.offset
  }

  advance(ms: number): void {
    this.offset += ms
  }
}

export interface DevnetOptions extends Partial<Omit<MarketplaceOptions, 'clock'>> {
  /** The clock an in-process devnet runs on (moved by the test); a new one, at the real time, unless given. */
  clock?: TestClock
  /**
   * Runs the built CLI's `devnet start --port 0 --json` as a child process instead (its own CPU, a real SIGKILL),
   * with `args` added and `configDir` as its config dir (where it records itself; the data dir unless given).
   */
  process?: boolean | {args?: string[]; configDir?: string}
}

export type Exit = {code: number | null; signal: NodeJS.Signals | null}

export interface Devnet {
  endpoint: string
  port: number
  dataDir: string
  /** What signed requests to this devnet are timed by: the server's clock in process, the real time for a child. */
  clock: TestClock
  /** The in-process server (its database, its held polls); a child-process devnet has none. */
  readonly server: MarketplaceServer
  /** The `devnet start` process, for a devnet started with `process`. */
  readonly child: ChildProcess
  /** Resolves once the child process is gone. */
  readonly exited: Promise<Exit>
  /** Stops serving (connections refused) and keeps the data. */
  pause(): Promise<void>
  /** Serves again on the same port with the same data. */
  resume(): Promise<void>
  /** Stops serving and removes the data dir. */
  stop(): Promise<void>
}

/** With OUTPOST_PROFILE_DIR set (`npm run bench` to find where the time goes), each child writes a V8 CPU profile there. */
export function profileArgs(): string[] {
  const dir = process.env.OUTPOST_PROFILE_DIR
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : []
}

/** The one way tests and benchmarks start a devnet marketplace on loopback: in this process, or as the CLI's child. */
export async function startDevnet(options: DevnetOptions = {}): Promise<Devnet> {
  const {process: asProcess, clock: givenClock, ...marketplace} = options
  const dataDir = marketplace.dataDir ?? mkdtempSync(join(tmpdir(), 'outpost-devnet-'))
  if (asProcess) {
    if (givenClock) throw new Error('a devnet in a child process runs on the real clock: pass no clock')
    return startChildDevnet(dataDir, asProcess === true ? {} : asProcess)
  }
  const clock = givenClock ?? new TestClock()
  const start = (port: number) => startMarketplace({logError: () => undefined, ...marketplace, clock, dataDir, port, host: '127.0.0.1'})
  let server: MarketplaceServer | undefined = await start(0)
  const port = Number(new URL(server.endpoint).port)
  return {
    endpoint: server.endpoint,
    port,
    dataDir,
    clock,
    get server() {
      if (!server) throw new Error('the devnet is paused')
      return server
    },
    get child(): ChildProcess {
      throw new Error('this devnet runs in the test process: start it with {process: true} for a child')
    },
    get exited(): Promise<Exit> {
      throw new Error('this devnet runs in the test process: start it with {process: true} for a child')
    },
    async pause() {
      await server?.stop()
      server = undefined
    },
    async resume() {
      server = await start(port)
    },
    async stop() {
      await server?.stop()
      server = undefined
      rmSync(dataDir, {recursive: true, force: true})
    },
  }
}

interface Child {
  child: ChildProcess
  endpoint: string
  exited: Promise<Exit>
}

async function spawnDevnet(dataDir: string, port: number, args: string[], configDir: string): Promise<Child> {
  const child = spawn(process.execPath, [...profileArgs(), BIN, 'devnet', 'start', '--port', String(port), '--json', '--data-dir', dataDir, ...args], {
    cwd: REPO_ROOT,
    env: {...process.env, NO_COLOR: '1', CI: 'true', OUTPOST_CONFIG_DIR: configDir},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({code, signal})))
  const lines = createInterface({input: child.stdout!})
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve)
    void exited.then(({code}) => reject(new Error(`devnet start exited (${code}) before listening:\n${stderr}`)))
  })
  const {endpoint} = JSON.parse(first) as {endpoint: string}
  return {child, endpoint, exited}
}

async function startChildDevnet(dataDir: string, options: {args?: string[]; configDir?: string}): Promise<Devnet> {
  const args = options.args ?? []
  const configDir = options.configDir ?? dataDir
  let current: Child | undefined = await spawnDevnet(dataDir, 0, args, configDir)
  const first = current
  const port = Number(new URL(first.endpoint).port)
  const end = async () => {
    if (!current) return
    current.child.kill('SIGTERM')
    await current.exited
    current = undefined
  }
  return {
    endpoint: first.endpoint,
    port,
    dataDir,
    clock: new TestClock(),
    get server(): MarketplaceServer {
      throw new Error('this devnet runs in a child process: read its database file, or start it in process')
    },
    get child() {
      return (current ?? first).child
    },
    get exited() {
      return (current ?? first).exited
    },
    pause: end,
    async resume() {
      current = await spawnDevnet(dataDir, port, args, configDir)
    },
    async stop() {
      await end()
      rmSync(dataDir, {recursive: true, force: true})
    },
  }
}
