import {readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {parseToml} from '../../src/core/config/load.js'
import {parseJson, runCli, tempConfigDir, TEST_PASSPHRASE} from '../support/cli.js'
import {HAVE_SCRIPT, runInTerminal} from '../support/terminal.js'

interface ErrorJson {
  error: {code: string; message: string; suggestion?: string}
}

interface Offering {
  name: string
  cpu_cores: number
  memory_mb: number
  storage_gb: number
  price_per_hour: string
}

interface InitJson {
  config_file: string
  config_status: string
  config_backup?: string
  agent_key: {public_key: string; encrypted: boolean; status: string}
  main_key?: {public_key: string; encrypted: boolean}
  provider: {name: string; contact_email: string} | null
  offerings: Offering[]
  capacity: {source: string; cpu_cores: number; memory_mb: number; storage_gb: number} | null
  warnings: string[]
  next_steps: string[]
}

const made: string[] = []
afterAll(() => {
  for (const dir of made) rmSync(dir, {recursive: true, force: true})
})

/** A fresh config dir, removed when the tests are done. */
function fresh(): string {
  const dir = tempConfigDir('outpost-init-')
  made.push(dir)
  return dir
}

function configOf(dir: string): {provider?: {name: string; contact_email: string}; offerings?: Offering[]; marketplace: {endpoint: string}} {
  return parseToml(readFileSync(join(dir, 'outpost.toml'), 'utf8'), 'outpost.toml') as ReturnType<typeof configOf>
}

describe('outpost init: the first hour (built CLI)', () => {
  it('off a terminal, every answer comes from flags: [provider], offerings sized from this host, an encrypted main key', async () => {
    const dir = fresh()
    const passphraseFile = join(fresh(), 'passphrase')
    writeFileSync(passphraseFile, `${TEST_PASSPHRASE}\n`)
    const run = await runCli(
      ['init', '--main-key', '--passphrase-file', passphraseFile, '--endpoint', 'https://api.example.net/', '--name', 'Acme Compute', '--contact-email', 'ops@acme.example', '--offerings', 'small,large', '--price-per-core', '0.04', '--json'],
      {env: {OUTPOST_CONFIG_DIR: dir}},
    )
    expect(run.exitCode, run.stderr).toBe(0)
    const result = parseJson<InitJson>(run)
    expect(result).toMatchObject({config_status: 'created', provider: {name: 'Acme Compute', contact_email: 'ops@acme.example'}, main_key: {encrypted: true}, agent_key: {encrypted: false}, warnings: []})
    expect(result.offerings.map((offering) => offering.name)).toEqual(['small', 'large'])
    expect(result.capacity).toMatchObject({source: 'this host'})
    // Sized from what the host has: never more cores or memory than it has, and priced by the share of its cores.
    for (const offering of result.offerings) {
      expect(offering.cpu_cores).toBeLessThanOrEqual(result.capacity?.cpu_cores ?? 0)
      expect(offering.memory_mb).toBeLessThan(result.capacity?.memory_mb ?? 0)
      expect(offering.storage_gb).toBeLessThanOrEqual(result.capacity?.storage_gb ?? 0)
    }
    const [small, large] = result.offerings
    expect(Number(large?.price_per_hour)).toBeGreaterThan(Number(small?.price_per_hour))
    const config = configOf(dir)
    expect(config).toMatchObject({marketplace: {endpoint: 'https://api.example.net'}, provider: {name: 'Acme Compute', contact_email: 'ops@acme.example'}})
    expect(config.offerings?.map((offering) => offering.name)).toEqual(['small', 'large'])
    expect(statSync(join(dir, 'outpost.toml')).mode & 0o777).toBe(0o600)
    expect(readFileSync(join(dir, 'provider-main.key'), 'utf8')).toContain('"encrypted"')

    const doctor = await runCli(['doctor', '--json'], {env: {OUTPOST_CONFIG_DIR: dir}})
    expect(doctor.exitCode, doctor.stdout).toBe(0)
    expect(parseJson<{checks: {status: string}[]}>(doctor).checks.every((check) => check.status === 'pass')).toBe(true)
    // The main key opens with the passphrase it was made with, and only with it.
    expect((await runCli(['keys', 'show', '--main-key-file', join(dir, 'provider-main.key')], {env: {OUTPOST_CONFIG_DIR: dir}})).stdout).toContain('(encrypted)')
  })

  it('off a terminal, nothing is asked: no prompt hangs, and what was not given is left out', async () => {
    const dir = fresh()
    const run = await runCli(['init', '--json'], {env: {OUTPOST_CONFIG_DIR: dir}, timeout: 20_000})
    expect(run.exitCode, run.stderr).toBe(0)
    const result = parseJson<InitJson>(run)
    expect(result).toMatchObject({provider: null, offerings: [], capacity: null})
    expect(result.next_steps[0]).toContain('add [provider] name and contact_email')
    expect(result.next_steps[1]).toContain('add [[offerings]]')
    const config = readFileSync(join(dir, 'outpost.toml'), 'utf8')
    expect(config).toContain('# [provider]')
    expect(configOf(dir).provider).toBeUndefined()
  })

  it('the main key is encrypted by default: with no passphrase and no terminal it stops before writing; --no-encrypt warns', async () => {
    const dir = fresh()
    const refused = await runCli(['init', '--main-key', '--json'], {env: {OUTPOST_CONFIG_DIR: dir}})
    expect(refused.exitCode).toBe(2)
    expect(parseJson<ErrorJson>(refused).error).toMatchObject({code: 'passphrase_required', suggestion: expect.stringContaining('--no-encrypt')})
    expect(readdirSync(dir)).toEqual([])

    const plain = await runCli(['init', '--main-key', '--no-encrypt', '--json'], {env: {OUTPOST_CONFIG_DIR: dir}})
    expect(plain.exitCode, plain.stderr).toBe(0)
    expect(parseJson<InitJson>(plain).warnings).toEqual([expect.stringContaining('holds the provider main key in plain text')])
    expect(readFileSync(join(dir, 'provider-main.key'), 'utf8')).toContain('"secret_key"')
    const human = await runCli(['init', '--main-key', '--no-encrypt', '--force'], {env: {OUTPOST_CONFIG_DIR: dir}})
    expect(human.stderr).toBe(`Warning: ${join(dir, 'provider-main.key')} holds the provider main key in plain text (--no-encrypt): anyone who reads it can move your stake`)
  })

  it.each([
    [['--endpoint', 'marketplace.example.net'], '--endpoint marketplace.example.net: expected an http:// or https:// URL', 'pass --endpoint https://marketplace.example.net'],
    [['--endpoint', 'http://127.0.0.1:8787/api/v1'], '--endpoint http://127.0.0.1:8787/api/v1: ends in /api/v1: the endpoint is the base URL, without it', 'pass --endpoint http://127.0.0.1:8787'],
    [['--contact-email', 'ops-at-acme', '--name', 'Acme'], '--contact-email ops-at-acme: expected an email address, like ops@example.net', 'pass --contact-email ops@example.net'],
    [['--offerings', 'huge'], '--offerings huge: unknown size huge', 'pass sizes from small, medium, large, or all, or none'],
    [['--price-per-core', '-1'], '--price-per-core -1: expected a decimal above zero with at most 6 digits after the point, like 0.02', 'pass --price-per-core 0.02'],
    [['--name', 'Acme'], 'missing answers, and nothing may prompt here (no terminal, CI=true, --yes or --json):\n  --contact-email (or OUTPOST_PROVIDER_CONTACT_EMAIL): the contact email, with --name', 'pass --contact-email'],
  ])('refuses %j before writing anything (exit 2), and the corrected run works', async (flags, message, suggestion) => {
    const dir = fresh()
    const env = {OUTPOST_CONFIG_DIR: dir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
    const run = await runCli(['init', '--main-key', ...flags, '--json'], {env})
    expect(run.exitCode, run.stdout).toBe(2)
    expect(parseJson<ErrorJson>(run).error).toMatchObject({message, suggestion})
    expect(readdirSync(dir)).toEqual([])
    const retry = await runCli(['init', '--main-key', '--endpoint', 'https://marketplace.example.net', '--json'], {env})
    expect(retry.exitCode, retry.stdout).toBe(0)
  })

  it('--config naming a directory is a usage error, not EISDIR', async () => {
    const dir = fresh()
    const run = await runCli(['init', '--config', dir], {env: {OUTPOST_CONFIG_DIR: dir}})
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toBe(`Error: --config ${dir} is a directory\n→ name the file, like --config ${join(dir, 'outpost.toml')}`)
  })

  it('on an existing config, adds only what it lacks ([provider], offerings), keeps the keys, and writes 0600 with a 0600 backup', async () => {
    const dir = fresh()
    const env = {OUTPOST_CONFIG_DIR: dir}
    expect((await runCli(['init'], {env})).exitCode).toBe(0)
    const agentKey = readFileSync(join(dir, 'agent.key'), 'utf8')
    const nothing = await runCli(['init', '--json'], {env})
    expect(nothing.exitCode).toBe(1)
    expect(parseJson<ErrorJson>(nothing).error).toMatchObject({code: 'already_initialised', message: expect.stringContaining('nothing was given to add to it')})

    const added = await runCli(['init', '--name', 'Acme Compute', '--contact-email', 'ops@acme.example', '--offerings', 'all', '--json'], {env})
    expect(added.exitCode, added.stdout + added.stderr).toBe(0)
    const result = parseJson<InitJson>(added)
    expect(result).toMatchObject({config_status: 'updated', agent_key: {status: 'kept'}, provider: {name: 'Acme Compute'}, capacity: {source: 'the local backend'}})
    expect(result.offerings.length).toBeGreaterThan(0)
    expect(readFileSync(join(dir, 'agent.key'), 'utf8')).toBe(agentKey)
    expect(configOf(dir).offerings?.length).toBe(result.offerings.length)
    expect(statSync(join(dir, 'outpost.toml')).mode & 0o777).toBe(0o600)
    expect(statSync(result.config_backup ?? '').mode & 0o777).toBe(0o600)

    const again = await runCli(['init', '--offerings', 'small', '--json'], {env})
    expect(again.exitCode).toBe(2)
    expect(parseJson<ErrorJson>(again).error.code).toBe('offerings_exist')
  })

  it.skipIf(!HAVE_SCRIPT)('in a terminal it asks: endpoint, name, email, price, offerings, and the passphrase twice', async () => {
    const dir = fresh()
    const run = await runInTerminal(['init', '--main-key'], {
      env: {OUTPOST_CONFIG_DIR: dir},
      steps: [
        {waitFor: 'Marketplace API URL', send: 'https://market.example.net\r'},
        {waitFor: 'Provider name', send: 'Terminal Compute\r'},
        {waitFor: 'Contact email', send: 'ops@terminal.example\r'},
        {waitFor: 'Price per vCPU per hour', send: '0.05\r'},
        {waitFor: 'Offerings to sell', send: '\r'},
        {waitFor: 'Key passphrase', send: `${TEST_PASSPHRASE}\r`},
        {waitFor: 'Repeat the passphrase', send: `${TEST_PASSPHRASE}\r`},
      ],
    })
    expect(run.exitCode, run.output).toBe(0)
    expect(run.output).toContain('sized from this host')
    const config = configOf(dir)
    expect(config).toMatchObject({marketplace: {endpoint: 'https://market.example.net'}, provider: {name: 'Terminal Compute', contact_email: 'ops@terminal.example'}})
    expect(config.offerings?.length).toBeGreaterThan(0)
    expect(readFileSync(join(dir, 'provider-main.key'), 'utf8')).toContain('"encrypted"')
    const show = await runCli(['keys', 'show', '--main-key-file', join(dir, 'provider-main.key'), '--json'], {env: {OUTPOST_CONFIG_DIR: dir}})
    expect(parseJson<{keys: {role: string; encrypted: boolean}[]}>(show).keys).toContainEqual(expect.objectContaining({role: 'provider-main', encrypted: true}))
  })

  it.skipIf(!HAVE_SCRIPT)('in a terminal, --yes asks nothing', async () => {
    const dir = fresh()
    const run = await runInTerminal(['init', '--yes'], {env: {OUTPOST_CONFIG_DIR: dir}})
    expect(run.exitCode, run.output).toBe(0)
    expect(run.output).not.toContain('Marketplace API URL')
    expect(configOf(dir).provider).toBeUndefined()
  })
})
