import {chmodSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {parseJson, runCli, tempConfigDir, TEST_PASSPHRASE} from '../support/cli.js'

interface DoctorJson {
  ok: boolean
  checks: {name: string; status: string; message: string; remedy?: string}[]
}

async function initialised(): Promise<{dir: string; env: Record<string, string>}> {
  const dir = tempConfigDir()
  const env = {OUTPOST_CONFIG_DIR: dir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
  const init = await runCli(['init', '--main-key'], {env})
  expect(init.exitCode, init.stderr).toBe(0)
  return {dir, env}
}

describe('outpost init and doctor (built CLI)', () => {
  it('init makes 0600 keys and config (the main key encrypted); doctor passes, warning that nothing can be rented yet', async () => {
    const {dir, env} = await initialised()
    for (const file of ['agent.key', 'provider-main.key', 'outpost.toml']) expect(statSync(join(dir, file)).mode & 0o777, file).toBe(0o600)
    expect(readFileSync(join(dir, 'provider-main.key'), 'utf8')).toContain('"encrypted"')
    expect(readFileSync(join(dir, 'agent.key'), 'utf8')).toContain('"secret_key"')
    const doctor = await runCli(['doctor'], {env})
    expect(doctor.exitCode, doctor.stdout + doctor.stderr).toBe(0)
    expect(doctor.stdout).toMatch(/✓ config/)
    expect(doctor.stdout).toMatch(/! provider: no \[provider\] section/)
    expect(doctor.stdout).toMatch(/! offerings: no \[\[offerings\]\]: nothing can be rented\n {4}→ add \[\[offerings\]\] to /)
    expect(doctor.stdout).toMatch(/✓ agent key/)
    const json = parseJson<DoctorJson>(await runCli(['doctor', '--json'], {env}))
    expect(json.ok).toBe(true)
    expect(json.checks.map((check) => [check.name, check.status])).toEqual([
      ['config', 'pass'],
      ['provider', 'warn'],
      ['offerings', 'warn'],
      ['agent key', 'pass'],
      ['provisioner', 'pass'],
      ['gpu', 'pass'],
    ])
  })

  it('doctor fails on a config that holds a secret and others can read, and gives the chmod', async () => {
    const {dir, env} = await initialised()
    const file = join(dir, 'outpost.toml')
    chmodSync(file, 0o644)
    // Readable by others but holding no secret: nothing to fail on.
    expect((await runCli(['doctor'], {env})).exitCode).toBe(0)
    writeFileSync(file, readFileSync(file, 'utf8').replace('type = "local"', 'type = "local"\n\n[provisioner.manual]\nwebhook_url = "https://hooks.example.net/T0/B0/s3cr3t"'))
    const doctor = await runCli(['doctor', '--json'], {env})
    expect(doctor.exitCode).toBe(6)
    expect(parseJson<DoctorJson>(doctor).checks[0]).toEqual({
      name: 'config',
      status: 'fail',
      message: `${file} holds [provisioner.manual] webhook_url and has mode 0644: other users can read it`,
      remedy: `run: chmod 600 ${file}`,
    })
    expect(doctor.stdout).not.toContain('s3cr3t')
    chmodSync(file, 0o600)
    expect((await runCli(['doctor'], {env})).exitCode).toBe(0)
  })

  it('init --json reports the public keys and never overwrites without --force', async () => {
    const {dir, env} = await initialised()
    const before = readFileSync(join(dir, 'agent.key'), 'utf8')
    const again = await runCli(['init', '--json'], {env})
    expect(again.exitCode).toBe(1)
    expect(parseJson(again)).toEqual({error: expect.objectContaining({code: 'already_initialised', suggestion: expect.stringContaining('--force')})})
    expect(readFileSync(join(dir, 'agent.key'), 'utf8')).toBe(before)
    const forced = parseJson<{agent_key: {public_key: string; backup: string}}>(await runCli(['init', '--force', '--json'], {env}))
    expect(forced.agent_key.public_key).toMatch(/^[0-9a-f]{64}$/)
    expect(readFileSync(forced.agent_key.backup, 'utf8')).toBe(before)
    expect(readdirSync(dir).some((name) => name.startsWith('outpost.toml.bak-'))).toBe(true)
  })

  it('init --encrypt with a passphrase file; doctor opens the key with it and refuses a wrong one', async () => {
    const dir = tempConfigDir()
    const passphraseFile = join(dir, 'pass')
    writeFileSync(passphraseFile, 'a long passphrase\n')
    const env = {OUTPOST_CONFIG_DIR: dir}
    expect((await runCli(['init', '--encrypt', '--passphrase-file', passphraseFile], {env})).exitCode).toBe(0)
    expect(readFileSync(join(dir, 'agent.key'), 'utf8')).toContain('"encrypted"')
    expect((await runCli(['doctor', '--passphrase-file', passphraseFile], {env})).exitCode).toBe(0)
    const wrong = await runCli(['doctor'], {env: {...env, OUTPOST_KEY_PASSPHRASE: 'nope'}})
    expect(wrong.exitCode).toBe(6)
    expect(wrong.stdout).toMatch(/✗ agent key: wrong passphrase/)
  })

  const broken: [string, (config: string) => string, RegExp][] = [
    ['a TOML syntax error', (config) => config.replace('[agent]', '[agent'), /outpost\.toml:\d+:\d+: TOML syntax error/],
    ['a schema error', (config) => config.replace('lock_ttl_seconds = 900', 'lock_ttl_seconds = -5'), /agent\.lock_ttl_seconds: .*got -5/],
    ['an unknown key', (config) => config.replace('long_poll_wait_seconds', 'long_pol_wait_seconds'), /agent\.long_pol_wait_seconds: unknown key \(did you mean "long_poll_wait_seconds"\?\)/],
    ['a placeholder', (config) => config.replace('http://127.0.0.1:8787', 'CHANGEME'), /marketplace\.endpoint: still a placeholder/],
  ]

  it.each(broken)('doctor fails on %s and names it', async (_what, breakIt, expected) => {
    const {dir, env} = await initialised()
    const file = join(dir, 'outpost.toml')
    writeFileSync(file, breakIt(readFileSync(file, 'utf8')))
    const doctor = await runCli(['doctor'], {env})
    expect(doctor.exitCode).not.toBe(0)
    expect(doctor.stdout).toMatch(expected)
    expect(doctor.stdout + doctor.stderr).not.toMatch(/\n\s+at /)
  })

  it('doctor fails on a 0644 key file and gives the chmod to run', async () => {
    const {dir, env} = await initialised()
    chmodSync(join(dir, 'agent.key'), 0o644)
    const doctor = await runCli(['doctor', '--json'], {env})
    expect(doctor.exitCode).toBe(6)
    const key = parseJson<DoctorJson>(doctor).checks.find((check) => check.name === 'agent key')
    expect(key).toMatchObject({status: 'fail', remedy: `run: chmod 600 ${join(dir, 'agent.key')}`})
  })

  it('doctor with no config says to run init, and --config points elsewhere', async () => {
    const dir = tempConfigDir()
    const doctor = await runCli(['doctor'], {env: {OUTPOST_CONFIG_DIR: dir}})
    expect(doctor.exitCode).toBe(3)
    expect(doctor.stdout).toMatch(/no configuration at .*outpost\.toml/)
    expect(doctor.stdout).toMatch(/outpost init/)
    const {dir: other} = await initialised()
    expect((await runCli(['doctor', '--config', join(other, 'outpost.toml')], {env: {OUTPOST_CONFIG_DIR: dir}})).exitCode).toBe(0)
  })

  it('usage errors exit 2 with one line, and in --json mode are JSON', async () => {
    const human = await runCli(['init', '--no-such-flag'])
    expect(human.exitCode).toBe(2)
    expect(human.stderr).toMatch(/Nonexistent flag: --no-such-flag/)
    const json = await runCli(['doctor', '--json', '--no-such-flag'])
    expect(json.exitCode).toBe(2)
    expect(parseJson(json)).toEqual({error: expect.objectContaining({code: 'usage'})})
  })
})
