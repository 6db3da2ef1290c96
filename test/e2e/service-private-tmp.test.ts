import {mkdirSync, mkdtempSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {parseJson, REPO_ROOT, runCli, tempConfigDir} from '../support/cli.js'

/**
 * `outpost service install` writes a unit with PrivateTmp=yes: the service gets an empty /tmp and /var/tmp of its own,
 * so a config, key or state under them is one it can never read. The command says so, and what to do.
 */

const made: string[] = []
afterAll(() => {
  for (const dir of made) rmSync(dir, {recursive: true, force: true})
})

async function initialised(dir: string): Promise<Record<string, string>> {
  made.push(dir)
  const env = {OUTPOST_CONFIG_DIR: dir}
  const init = await runCli(['init'], {env})
  expect(init.exitCode, init.stderr).toBe(0)
  return env
}

describe('outpost service install with a config under /tmp (built CLI)', () => {
  it('--dry-run warns that PrivateTmp=yes hides the config, key and state from the service, and says what to do', async () => {
    const dir = tempConfigDir('outpost-service-tmp-')
    const env = await initialised(dir)
    const printed = await runCli(['service', 'install', '--dry-run', '--unit-dir', join(dir, 'units')], {env})
    expect(printed.exitCode, printed.stderr).toBe(0)
    expect(printed.stdout).toContain('PrivateTmp=yes')
    // One line, however long: a warning is never wrapped to the terminal's width.
    const warning = printed.stderr
    expect(warning.split('\n')).toHaveLength(1)
    expect(warning).toContain(`the config file ${join(dir, 'outpost.toml')}`)
    expect(warning).toContain(`the state directory ${join(dir, 'state')}`)
    expect(warning).toContain("PrivateTmp=yes gives it an empty /tmp and /var/tmp of its own")
    expect(warning).toContain('OUTPOST_CONFIG_DIR=/var/lib/outpost')
    const json = parseJson<{unit: string; warnings: string[]}>(await runCli(['service', 'install', '--dry-run', '--unit-dir', join(dir, 'units'), '--json'], {env}))
    expect(json.warnings).toHaveLength(1)
    expect(json.warnings[0]).toContain('under /tmp or /var/tmp')
  })

  it('install warns the same way', async () => {
    const dir = tempConfigDir('outpost-service-tmp-')
    const env = await initialised(dir)
    const units = join(dir, 'units')
    const installed = parseJson<{warnings: string[]}>(await runCli(['service', 'install', '--unit-dir', units, '--logrotate-dir', units, '--no-start', '--json'], {env}))
    expect(installed.warnings.some((warning) => warning.includes('PrivateTmp=yes') && warning.includes(join(dir, 'outpost.toml')))).toBe(true)
  })

  it('says nothing of the kind for a config outside /tmp', async () => {
    mkdirSync(join(REPO_ROOT, 'test-results'), {recursive: true})
    const dir = mkdtempSync(join(REPO_ROOT, 'test-results', 'outpost-service-'))
    const env = await initialised(dir)
    const printed = await runCli(['service', 'install', '--dry-run', '--unit-dir', join(dir, 'units'), '--json'], {env})
    expect(printed.exitCode, printed.stderr).toBe(0)
    expect(parseJson<{warnings: string[]}>(printed).warnings).toEqual([])
    expect(printed.stderr).not.toContain('PrivateTmp')
  })
})
