import {spawn, type ChildProcess} from 'node:child_process'
import {createInterface} from 'node:readline'

import {BIN, REPO_ROOT} from '../helpers/cli.js'
import {profileArgs} from '../helpers/marketplace.js'
import {systemClock} from '../../src/marketplace/clock.js'

export interface DevnetProcess {
  child: ChildProcess
  endpoint: string
  /** For harness.send: the child signs nothing, the test signs with the real clock. */
  clock: typeof systemClock
  /** Resolves with the exit code and signal once the process is gone. */
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
}

/**
 * Runs the built CLI's `devnet start --port 0 --json` and waits for its one JSON line. Its config dir (where it records
 * itself for the renter commands) is `configDir`, else the data dir: never the user's own.
 */
export async function startDevnetProcess(dataDir: string, extraArgs: string[] = [], configDir = dataDir): Promise<DevnetProcess> {
  const child = spawn(process.execPath, [...profileArgs(), BIN, 'devnet', 'start', '--port', '0', '--json', '--data-dir', dataDir, ...extraArgs], {
    cwd: REPO_ROOT,
    env: {...process.env, NO_COLOR: '1', CI: 'true', OUTPOST_CONFIG_DIR: configDir},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) => child.once('exit', (code, signal) => resolve({code, signal})))
  const lines = createInterface({input: child.stdout!})
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve)
    void exited.then(({code}) => reject(new Error(`devnet start exited (${code}) before listening:\n${stderr}`)))
  })
  const {endpoint} = JSON.parse(first) as {endpoint: string}
  return {child, endpoint, clock: systemClock, exited}
}
