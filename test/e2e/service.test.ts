import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {execa} from 'execa'
import {describe, expect, it} from 'vitest'

import {parseJson, runCli, tempConfigDir} from '../support/cli.js'

async function verify(unitFile: string): Promise<{exitCode: number; output: string}> {
  const result = await execa('systemd-analyze', ['verify', unitFile], {reject: false})
  return {exitCode: result.exitCode ?? -1, output: `${String(result.stdout)}${String(result.stderr)}`}
}

describe('outpost service (built CLI)', () => {
  it('renders a hardened unit that systemd-analyze verify accepts, and a logrotate file', async () => {
    const dir = tempConfigDir()
    const env = {OUTPOST_CONFIG_DIR: dir}
    expect((await runCli(['init'], {env})).exitCode).toBe(0)
    const units = join(dir, 'units')
    const logFile = join(dir, 'log', 'outpost.log')
    const result = await runCli(['service', 'install', '--unit-dir', units, '--logrotate-dir', units, '--log-file', logFile, '--json'], {env})
    expect(result.exitCode, result.stderr).toBe(0)
    const installed = parseJson<{unit_file: string; logrotate_file: string; started: boolean}>(result)
    expect(installed.started).toBe(false)
    const unit = readFileSync(installed.unit_file, 'utf8')
    for (const line of [
      'User=outpost',
      'Restart=always',
      'UMask=0077',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'PrivateTmp=yes',
      `ReadWritePaths=${join(dir, 'state')} ${join(dir, 'log')}`,
      `Environment=OUTPOST_CONFIG_DIR=${dir}`,
      `StandardOutput=append:${logFile}`,
    ]) {
      expect(unit.split('\n')).toContain(line)
    }
    expect(unit).toMatch(new RegExp(`^ExecStart=${process.execPath} --max-semi-space-size=4 \\S+/bin/run\\.js run --config ${join(dir, 'outpost.toml')}$`, 'm'))
    // A stop drains, within the unit's stop timeout (45 s): drain waits 40 s at most.
    expect(unit).toMatch(new RegExp(`^ExecStop=${process.execPath} \\S+/bin/run\\.js drain --config ${join(dir, 'outpost.toml')} --timeout 40s$`, 'm'))
    expect(unit.split('\n')).toContain('TimeoutStopSec=45')
    const verified = await verify(installed.unit_file)
    expect(verified.exitCode, verified.output).toBe(0)
    expect(readFileSync(installed.logrotate_file, 'utf8')).toContain(`${logFile} {`)
  })

  it('systemd-analyze verify does catch a broken unit (so the check above means something)', async () => {
    const dir = tempConfigDir()
    mkdirSync(join(dir, 'units'))
    const broken = join(dir, 'units', 'outpost.service')
    writeFileSync(broken, '[Service]\nExecStart=relative/run.js\n')
    expect((await verify(broken)).exitCode).not.toBe(0)
  })

  it('--dry-run prints the unit and writes nothing; uninstall removes what install wrote', async () => {
    const dir = tempConfigDir()
    const env = {OUTPOST_CONFIG_DIR: dir}
    await runCli(['init'], {env})
    const units = join(dir, 'units')
    const dry = parseJson<{unit: string}>(await runCli(['service', 'install', '--dry-run', '--unit-dir', units, '--json'], {env}))
    expect(dry.unit).toContain('[Install]\nWantedBy=multi-user.target')
    const status = parseJson<{installed: boolean}>(await runCli(['service', 'status', '--unit-dir', units, '--json'], {env}))
    expect(status.installed).toBe(false)
    await runCli(['service', 'install', '--unit-dir', units, '--logrotate-dir', units, '--log-file', join(dir, 'a.log')], {env})
    expect(parseJson<{installed: boolean}>(await runCli(['service', 'status', '--unit-dir', units, '--json'], {env})).installed).toBe(true)
    const removed = parseJson<{removed: string[]}>(await runCli(['service', 'uninstall', '--unit-dir', units, '--logrotate-dir', units, '--json'], {env}))
    expect(removed.removed.sort()).toEqual([join(units, 'outpost'), join(units, 'outpost.service')])
  })
})
