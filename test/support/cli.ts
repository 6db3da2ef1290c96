import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {execa, type Options} from 'execa'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const BIN = join(REPO_ROOT, 'bin', 'run.js')

export interface CliResult {
  exitCode: number
  stdout: string
  stderr: string
}

/** The passphrase of the provider main keys the tests make: `init --main-key` encrypts the main key by default. */
export const TEST_PASSPHRASE = 'a test passphrase, not a secret'

/** A fresh config directory in /tmp, as a new user's would be. */
export function tempConfigDir(prefix = 'outpost-e2e-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** Runs the built CLI (bin/run.js) as a user would: no TTY, CI=true, the given env on top of a clean one. */
export async function runCli(args: string[], options: {env?: Record<string, string | undefined>; input?: string; cwd?: string; timeout?: number} = {}): Promise<CliResult> {
  const execaOptions: Options = {
    reject: false,
    cwd: options.cwd ?? REPO_ROOT,
    env: {NO_COLOR: '1', CI: 'true', ...options.env},
    extendEnv: true,
    input: options.input ?? '',
    // Below the test timeout (vitest.config.ts), so a hung CLI fails its test with its output, not a bare timeout.
    timeout: options.timeout ?? 110_000,
  }
  const result = await execa('node', [BIN, ...args], execaOptions)
  return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)}
}

/** Parses the --json output of a command; fails the test with the output when it isn't JSON. */
export function parseJson<T = Record<string, unknown>>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T
  } catch {
    throw new Error(`expected JSON on stdout, got:\n${result.stdout}\nstderr:\n${result.stderr}`)
  }
}
