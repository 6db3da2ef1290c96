import {mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {ApiClient} from '../../src/core/api/client.js'
import {registerProvider as registerProfile} from '../../src/core/api/main-key.js'
import {fromHex} from '../../src/core/hex.js'
import {signBytes} from '../../src/core/signing.js'
import {readKeyFile} from '../../src/core/keys.js'
import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {parseJson, runCli, tempConfigDir, TEST_PASSPHRASE} from '../support/cli.js'

const OFFERING = `
[provider]
name = "Acme Compute"
contact_email = "ops@acme.example"
regions = ["eu-central"]

[[offerings]]
name = "small"
product_type = "compute"
cpu_cores = 2
memory_mb = 2048
storage_gb = 20
price_per_hour = "0.05"
`

interface RegisterJson {
  provider_pubkey: string
  agent_pubkey: string
  provider: string
  delegation: {status: string; permissions: string[]; expires_at: number | null}
  offerings: {name: string; status: string; offering_id?: string}[]
  config_updated: boolean
}

interface DoctorJson {
  ok: boolean
  checks: {name: string; status: string; message: string}[]
}

let server: MarketplaceServer

beforeAll(async () => {
  server = await startMarketplace({dataDir: mkdtempSync(join(tmpdir(), 'outpost-devnet-')), port: 0, host: '127.0.0.1'})
})

afterAll(async () => {
  await server.stop()
})

async function provider(): Promise<{dir: string; env: Record<string, string>}> {
  const dir = tempConfigDir()
  const env = {OUTPOST_CONFIG_DIR: dir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
  expect((await runCli(['init', '--main-key', '--endpoint', server.endpoint], {env})).exitCode).toBe(0)
  writeFileSync(join(dir, 'outpost.toml'), readFileSync(join(dir, 'outpost.toml'), 'utf8') + OFFERING)
  return {dir, env: {...env, OUTPOST_MAIN_KEY_FILE: join(dir, 'provider-main.key')}}
}

describe('outpost register, keys and doctor --verify-api (built CLI, real devnet)', () => {
  it('registers, delegates and publishes; a second run changes nothing; doctor --verify-api passes', async () => {
    const {dir, env} = await provider()
    const first = await runCli(['register', '--json', '--expires-in', '90d'], {env})
    expect(first.exitCode, first.stderr + first.stdout).toBe(0)
    const result = parseJson<RegisterJson>(first)
    // init --main-key already wrote provider_pubkey, so register has nothing to change in the config.
    expect(result).toMatchObject({provider: 'created', delegation: {status: 'created'}, config_updated: false})
    expect(result.offerings).toEqual([expect.objectContaining({name: 'small', status: 'created'})])
    expect(readFileSync(join(dir, 'outpost.toml'), 'utf8')).toContain(`provider_pubkey = "${result.provider_pubkey}"`)

    const second = parseJson<RegisterJson>(await runCli(['register', '--json', '--expires-in', '90d'], {env}))
    expect(second).toMatchObject({provider: 'unchanged', delegation: {status: 'unchanged'}, config_updated: false})
    expect(second.offerings).toEqual([expect.objectContaining({name: 'small', status: 'unchanged', offering_id: result.offerings[0]?.offering_id})])

    const offerings = (await (await fetch(`${server.endpoint}/api/v1/offerings`)).json()) as {offerings: {name: string; provider_pubkey: string}[]}
    expect(offerings.offerings.filter((offering) => offering.provider_pubkey === result.provider_pubkey)).toHaveLength(1)

    const doctor = await runCli(['doctor', '--verify-api', '--json'], {env})
    const checks = parseJson<DoctorJson>(doctor)
    expect(doctor.exitCode, JSON.stringify(checks)).toBe(0)
    expect(checks.checks.map((check) => [check.name, check.status])).toEqual(
      expect.arrayContaining([
        ['api reachable', 'pass'],
        ['clock', 'pass'],
        ['delegation', 'pass'],
        ['permissions', 'pass'],
      ]),
    )
  })

  it('doctor --verify-api warns when the delegation expires within 7 days and fails on missing permissions', async () => {
    const {env} = await provider()
    expect((await runCli(['register', '--expires-in', '2d', '--permissions', 'heartbeat,fetch_contracts'], {env})).exitCode).toBe(0)
    const doctor = await runCli(['doctor', '--verify-api', '--json'], {env})
    const checks = parseJson<DoctorJson>(doctor).checks
    expect(checks.find((check) => check.name === 'delegation')).toMatchObject({status: 'warn', message: expect.stringMatching(/expires .* \(in 2\.0 days\)/)})
    expect(checks.find((check) => check.name === 'permissions')).toMatchObject({status: 'fail', message: expect.stringContaining('health_check')})
    expect(doctor.exitCode).toBe(6)
  })

  it('doctor --verify-api fails clearly before registration and when the marketplace is down', async () => {
    const {env} = await provider()
    const unregistered = parseJson<DoctorJson>(await runCli(['doctor', '--verify-api', '--json'], {env: {...env, OUTPOST_MARKETPLACE_PROVIDER_PUBKEY: 'ab'.repeat(32)}}))
    expect(unregistered.checks.find((check) => check.name === 'delegation')).toMatchObject({
      status: 'fail',
      message: expect.stringMatching(/^the marketplace does not know agent key [0-9a-f]{64}: it was never delegated$/),
      remedy: expect.stringContaining('outpost register --config'),
    })
    const down = await runCli(['doctor', '--verify-api'], {env: {...env, OUTPOST_MARKETPLACE_ENDPOINT: 'http://127.0.0.1:9', OUTPOST_MARKETPLACE_PROVIDER_PUBKEY: 'ab'.repeat(32)}})
    expect(down.exitCode).toBe(6)
    expect(down.stdout).toMatch(/✗ api reachable: .*cannot reach http:\/\/127\.0\.0\.1:9/)
  })

  it('offline signing: --print-delegation prints the exact text; its signature submitted with --delegation-signature works', async () => {
    const {dir} = await provider()
    const mainKeyFile = join(dir, 'provider-main.key')
    const mainKey = await readKeyFile(mainKeyFile, {passphrase: () => TEST_PASSPHRASE})
    // The provider profile is registered once from wherever the main key lives; the offline flow delegates only.
    await registerProfile(new ApiClient({endpoint: server.endpoint, key: mainKey}), {name: 'Offline Co', contact_email: 'ops@offline.example'})
    const offlineEnv = {OUTPOST_CONFIG_DIR: dir}
    const printed = await runCli(['register', '--print-delegation', '--expires-at', '1900000000000', '--label', 'rack-7'], {env: offlineEnv})
    expect(printed.exitCode, printed.stderr).toBe(0)
    const text = printed.stdout.replace(/\n$/, '')
    const agent = parseJson<{keys: {role: string; public_key: string}[]}>(await runCli(['keys', 'show', '--json'], {env: offlineEnv})).keys[0]
    expect(text.split('\n')).toEqual([
      'outpost-delegation-v1',
      agent?.public_key,
      Buffer.from(mainKey.publicKey).toString('hex'),
      'benchmark,fetch_contracts,fetch_jobs,health_check,heartbeat,provision,run_jobs,usage_report',
      '1900000000000',
      'rack-7',
    ])
    const signature = Buffer.from(signBytes(text, mainKey.seed)).toString('hex')
    const bad = await runCli(['register', '--expires-at', '1900000000001', '--label', 'rack-7', '--delegation-signature', signature], {env: offlineEnv})
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr).toMatch(/does not verify/)
    const submitted = await runCli(['register', '--json', '--expires-at', '1900000000000', '--label', 'rack-7', '--delegation-signature', signature], {env: offlineEnv})
    expect(submitted.exitCode, submitted.stdout + submitted.stderr).toBe(0)
    expect(parseJson<RegisterJson>(submitted).delegation).toMatchObject({status: 'created', expires_at: 1_900_000_000_000})
    const doctor = parseJson<DoctorJson>(await runCli(['doctor', '--verify-api', '--json'], {env: offlineEnv}))
    expect(doctor.checks.find((check) => check.name === 'permissions')).toMatchObject({status: 'pass'})
    expect(fromHex(agent?.public_key ?? '', 32, 'agent')).toHaveLength(32)
  })

  it('doctor --verify-api recognises an endpoint ending in /api/v1, and any HTTP server that is no marketplace', async () => {
    const {env} = await provider()
    expect((await runCli(['register'], {env})).exitCode).toBe(0)
    const suffixed = await runCli(['doctor', '--verify-api', '--json'], {env: {...env, OUTPOST_MARKETPLACE_ENDPOINT: `${server.endpoint}/api/v1`}})
    expect(suffixed.exitCode).toBe(6)
    const checks = parseJson<DoctorJson>(suffixed).checks
    expect(checks.find((check) => check.name === 'delegation')).toBeUndefined()
    expect(checks.find((check) => check.name === 'marketplace')).toMatchObject({
      status: 'fail',
      message: `${server.endpoint}/api/v1 is not an Outpost marketplace API (drop /api/v1?): GET /api/v1/offerings answered 404`,
      remedy: `set [marketplace] endpoint = "${server.endpoint}": the base URL, without /api/v1`,
    })

    const other = createServer((_request, response) => response.writeHead(200, {'content-type': 'text/html'}).end('<h1>It works!</h1>'))
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve))
    try {
      const endpoint = `http://127.0.0.1:${(other.address() as AddressInfo).port}`
      const doctor = await runCli(['doctor', '--verify-api'], {env: {...env, OUTPOST_MARKETPLACE_ENDPOINT: endpoint}})
      expect(doctor.exitCode).toBe(6)
      expect(doctor.stdout).toContain(`✗ marketplace: ${endpoint} is not an Outpost marketplace API: GET /api/v1/offerings answered 200, not JSON`)
      expect(doctor.stdout).not.toContain('✗ delegation')
    } finally {
      other.close()
    }
  })

  it('register without offerings says nothing can be rented; register and keys rotate keep the config 0600', async () => {
    const dir = tempConfigDir()
    const env = {OUTPOST_CONFIG_DIR: dir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
    const mainDir = tempConfigDir()
    expect((await runCli(['init', '--main-key', '--config', join(mainDir, 'outpost.toml')], {env})).exitCode).toBe(0)
    // A config with no provider_pubkey yet (init without --main-key), so register writes it.
    expect((await runCli(['init', '--endpoint', server.endpoint, '--name', 'Bare Co', '--contact-email', 'ops@bare.example'], {env})).exitCode).toBe(0)
    const config = join(dir, 'outpost.toml')
    const registered = await runCli(['register', '--main-key-file', join(mainDir, 'provider-main.key'), '--json'], {env})
    expect(registered.exitCode, registered.stdout + registered.stderr).toBe(0)
    const result = parseJson<RegisterJson & {warnings: string[]}>(registered)
    expect(result).toMatchObject({config_updated: true, offerings: []})
    expect(result.warnings).toEqual([`${config} has no [[offerings]]: nothing can be rented until you add one and run \`outpost register\` again (\`outpost init --offerings all\` sizes them from the backend)`])
    expect(statSync(config).mode & 0o777).toBe(0o600)
    const human = await runCli(['register', '--main-key-file', join(mainDir, 'provider-main.key')], {env})
    expect(human.stderr).toContain('Warning: ' + config + ' has no [[offerings]]: nothing can be rented')

    const rotated = await runCli(['keys', 'rotate', '--main-key-file', join(mainDir, 'provider-main.key'), '--grace', '0'], {env})
    expect(rotated.exitCode, rotated.stderr).toBe(0)
    expect(statSync(config).mode & 0o777).toBe(0o600)
    for (const name of readdirSync(dir).filter((file) => file.startsWith('outpost.toml.bak-'))) expect(statSync(join(dir, name)).mode & 0o777, name).toBe(0o600)
  })

  it('keys rotate: new key works, config points at it, the old one ends after the grace (or at once)', async () => {
    const {dir, env} = await provider()
    expect((await runCli(['register'], {env})).exitCode).toBe(0)
    const before = parseJson<{keys: {public_key: string}[]}>(await runCli(['keys', 'show', '--json'], {env})).keys[0]?.public_key
    const rotated = await runCli(['keys', 'rotate', '--grace', '0', '--json'], {env})
    expect(rotated.exitCode, rotated.stderr + rotated.stdout).toBe(0)
    const result = parseJson<{old_agent_pubkey: string; new_agent: {public_key: string; file: string}; old_delegation: {revoked_at: number | null}}>(rotated)
    expect(result.old_agent_pubkey).toBe(before)
    expect(result.old_delegation.revoked_at).not.toBeNull()
    expect(readFileSync(join(dir, 'outpost.toml'), 'utf8')).toMatch(/key_file = "agent-\d{8}T\d{6}Z\.key"/)
    const after = parseJson<{keys: {public_key: string}[]}>(await runCli(['keys', 'show', '--json'], {env})).keys[0]?.public_key
    expect(after).toBe(result.new_agent.public_key)
    expect((await runCli(['doctor', '--verify-api'], {env})).exitCode).toBe(0)

    const graced = parseJson<{old_delegation: {revoked_at: number | null; expires_at: number}}>(await runCli(['keys', 'rotate', '--grace', '24h', '--json'], {env}))
    expect(graced.old_delegation.revoked_at).toBeNull()
    expect(graced.old_delegation.expires_at - Date.now()).toBeGreaterThan(23 * 3600 * 1000)
    expect(graced.old_delegation.expires_at - Date.now()).toBeLessThanOrEqual(24 * 3600 * 1000)
  })

  it('register without a name says which flags to pass', async () => {
    const dir = tempConfigDir()
    const env = {OUTPOST_CONFIG_DIR: dir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
    await runCli(['init', '--main-key', '--endpoint', server.endpoint], {env})
    const result = await runCli(['register', '--json'], {env: {...env, OUTPOST_MAIN_KEY_FILE: join(dir, 'provider-main.key')}})
    expect(result.exitCode).toBe(2)
    expect(parseJson(result)).toEqual({error: expect.objectContaining({code: 'profile_missing', suggestion: expect.stringContaining('--contact-email')})})
  })
})
