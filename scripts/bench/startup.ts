import {execFileSync, spawnSync} from 'node:child_process'
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import type {BenchRow, BenchSection} from './types.js'

const BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
const RUNS = 15
const STARTUP_GOALS: Record<string, number> = {'outpost --version': 1.2, 'outpost --help': 2, 'outpost run --help': 2, 'outpost doctor': 3}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
}

function timeOnce(args: string[], env: NodeJS.ProcessEnv): number {
  const start = process.hrtime.bigint()
  const result = spawnSync('node', args, {env, stdio: 'ignore'})
  if (result.error) throw result.error
  return Number(process.hrtime.bigint() - start) / 1e6
}

/** Cold-start medians of the CLI next to `node -e 0`, interleaved so machine noise hits every command alike. */
export const startupBench: BenchSection = async () => {
  const configDir = mkdtempSync(join(tmpdir(), 'outpost-bench-'))
  const env = {...process.env, OUTPOST_CONFIG_DIR: configDir, NO_COLOR: '1'}
  execFileSync('node', [BIN, 'init'], {env, stdio: 'ignore'})
  const commands: [string, string[]][] = [
    ['node -e 0', ['-e', '0']],
    ['outpost --version', [BIN, '--version']],
    ['outpost --help', [BIN, '--help']],
    // A command's help: oclif renders it from the manifest, without loading the command.
    ['outpost run --help', [BIN, 'run', '--help']],
    ['outpost doctor', [BIN, 'doctor']],
  ]
  const samples = new Map<string, number[]>(commands.map(([name]) => [name, []]))
  for (const [, args] of commands) timeOnce(args, env)
  for (let run = 0; run < RUNS; run++) {
    for (const [name, args] of commands) samples.get(name)?.push(timeOnce(args, env))
  }
  const baseline = median(samples.get('node -e 0') ?? [])
  return commands.map(([name]): BenchRow => {
    const value = median(samples.get(name) ?? [])
    return {
      group: 'startup',
      name: `${name} (median of ${RUNS})`,
      value: Math.round(value),
      unit: 'ms',
      ratio: name === 'node -e 0' ? 1 : value / baseline,
      note: name === 'node -e 0' ? 'the baseline' : `goal ≤ ${STARTUP_GOALS[name] ?? Number.NaN} × node -e 0`,
    }
  })
}
