import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {execa} from 'execa'
import {describe, expect, it} from 'vitest'

import {BIN, REPO_ROOT, tempConfigDir} from '../support/cli.js'

// chalk, ora and execa too: light, but nothing --version or --help needs.
const HEAVY = ['ssh2', 'proxmox-api', 'better-sqlite3', '@inquirer', 'listr2', 'pino', 'prom-client', 'zod', 'chalk', 'ora', 'execa']

async function modulesLoadedBy(args: string[], expectedExit: number | 'any' = 0, env: Record<string, string> = {}, dir = tempConfigDir('outpost-trace-')): Promise<string[]> {
  const trace = join(dir, 'imports.txt')
  const result = await execa('node', ['--import', join(REPO_ROOT, 'test/fixtures/trace-imports.mjs'), BIN, ...args], {
    env: {OUTPOST_TRACE_IMPORTS: trace, OUTPOST_CONFIG_DIR: dir, NO_COLOR: '1', ...env},
    reject: false,
  })
  if (expectedExit !== 'any') expect(result.exitCode, String(result.stderr)).toBe(expectedExit)
  return readFileSync(trace, 'utf8').split('\n').filter(Boolean)
}

describe('startup stays light', () => {
  it.each([[[]], [['--version']], [['--help']], [['doctor', '--help']]])('outpost %j loads no heavy module', async (args) => {
    const loaded = await modulesLoadedBy(args)
    expect(loaded.some((url) => url.endsWith('/bin/run.js'))).toBe(true)
    for (const heavy of HEAVY) expect(loaded.filter((url) => url.includes(`/node_modules/${heavy}`))).toEqual([])
  })

  it('--version prints the package version in oclif\'s format', async () => {
    const {version} = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {version: string}
    const result = await execa('node', [BIN, '--version'])
    expect(result.stdout).toBe(`outpost-cli/${version} ${process.platform}-${process.arch} node-${process.version}`)
  })

  it('outpost with no arguments shows the getting-started steps before the help', async () => {
    const result = await execa('node', [BIN], {env: {NO_COLOR: '1'}})
    expect(String(result.stdout)).toMatch(/^Getting started as a provider:\n {2}1\. outpost init --main-key/)
    expect(String(result.stdout)).toContain('COMMANDS')
    const help = await execa('node', [BIN, '--help'])
    expect(String(help.stdout)).not.toContain('Getting started')
  })

  it('runs the built commands whatever NODE_ENV says, never src/ through tsx', async () => {
    for (const nodeEnv of ['development', 'test']) {
      const loaded = await modulesLoadedBy(['doctor'], 3, {NODE_ENV: nodeEnv})
      expect(loaded.some((url) => url.includes('/dist/commands/doctor.js')), nodeEnv).toBe(true)
      expect(loaded.filter((url) => url.startsWith(`file://${REPO_ROOT}src/`) || url.includes('/node_modules/tsx/')), nodeEnv).toEqual([])
    }
  })

  it("imports oclif by its parts, never @oclif/core's index, which loads all of oclif and semver (~20 ms a command)", async () => {
    for (const args of [['--help'], ['doctor']]) {
      const loaded = await modulesLoadedBy(args, args[0] === 'doctor' ? 3 : 0)
      expect(loaded.some((url) => url.includes('/node_modules/@oclif/core/lib/execute.js')), args[0]).toBe(true)
      expect(loaded.filter((url) => url.endsWith('/node_modules/@oclif/core/lib/index.js')), args[0]).toEqual([])
    }
  })

  it('reading a config and a plain key builds none of the marketplace answer schemas (~25 ms of zod each) and loads no tweetnacl (~20 ms): doctor loads the schemas only to ask the marketplace', async () => {
    const dir = tempConfigDir('outpost-trace-')
    await execa('node', [BIN, 'init'], {env: {OUTPOST_CONFIG_DIR: dir, NO_COLOR: '1'}})
    const apiSchemas = (loaded: string[]) => loaded.filter((url) => /\/dist\/core\/api\/(schemas|job-schemas|client)\.js$/.test(url))
    const doctor = await modulesLoadedBy(['doctor'], 0, {}, dir)
    expect(apiSchemas(doctor)).toEqual([])
    expect(doctor.filter((url) => url.includes('/node_modules/tweetnacl/'))).toEqual([])
    expect(apiSchemas(await modulesLoadedBy(['doctor', '--verify-api'], 'any', {}, dir))).not.toEqual([])
  })

  it('the trace sees what a real command loads (so the check above can fail)', async () => {
    const loaded = await modulesLoadedBy(['doctor'], 3)
    expect(loaded.some((url) => url.includes('/node_modules/zod/'))).toBe(true)
    expect(loaded.some((url) => url.includes('/node_modules/chalk/'))).toBe(true)
  })
})
