import {existsSync} from 'node:fs'
import {execa} from 'execa'

import {BIN, REPO_ROOT} from './cli.js'

/** util-linux `script` is what gives the CLI a real terminal; without it the terminal tests are skipped. */
export const HAVE_SCRIPT = existsSync('/usr/bin/script')

export interface TerminalStep {
  /** Text the CLI prints before the answer is typed (a prompt). */
  waitFor: string | RegExp
  /** What the person types, with `\r` for Enter. */
  send: string
}

export interface TerminalResult {
  exitCode: number
  /** Everything the terminal showed, stdout and stderr together. */
  output: string
}

function quote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`
}

/**
 * Runs the built CLI on a pseudo-terminal (stdin and stdout are a TTY, as in a person's shell), typing each answer once
 * its prompt has appeared. A prompt that never appears fails the run with the output so far.
 */
export async function runInTerminal(args: string[], options: {env: Record<string, string | undefined>; steps?: TerminalStep[]; timeoutMs?: number}): Promise<TerminalResult> {
  // exec: the CLI itself takes the terminal's Ctrl-C, not a shell in between (dash dies of it with 130).
  const command = `stty cols 200 rows 50; exec ${['node', BIN, ...args].map(quote).join(' ')}`
  const child = execa('script', ['-qec', command, '/dev/null'], {
    cwd: REPO_ROOT,
    env: {NO_COLOR: '1', TERM: 'xterm', ...options.env, CI: ''},
    reject: false,
    timeout: options.timeoutMs ?? 60_000,
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  let seen = 0
  for (const step of options.steps ?? []) {
    const found = await new Promise<boolean>((resolve) => {
      const look = () => {
        const rest = output.slice(seen)
        const index = typeof step.waitFor === 'string' ? rest.indexOf(step.waitFor) : rest.search(step.waitFor)
        if (index === -1) return false
        seen += index + 1
        return true
      }
      if (look()) return resolve(true)
      const onData = () => {
        if (!look()) return
        child.stdout?.off('data', onData)
        resolve(true)
      }
      child.stdout?.on('data', onData)
      void child.then(() => resolve(look()))
    })
    if (!found) break
    child.stdin?.write(step.send)
  }
  const result = await child
  return {exitCode: result.exitCode ?? -1, output}
}
