import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {networkInterfaces, tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {parseJson, runCli, TEST_PASSPHRASE} from '../support/cli.js'

/**
 * Issue 15 item 4: signed requests never go over plain HTTP off this host unless the operator says so, for one run
 * (`--allow-insecure-http`, OUTPOST_ALLOW_INSECURE_HTTP) or for good ([marketplace] allow_insecure_http); doctor says
 * which it is. A real devnet listens on this host's own (non-loopback) address.
 */

const address = Object.values(networkInterfaces())
  .flat()
  .find((entry) => entry && !entry.internal && entry.family === 'IPv4')?.address

let server: MarketplaceServer
let dataDir: string
let configDir: string
let endpoint: string

beforeAll(async () => {
  if (!address) return
  dataDir = mkdtempSync(join(tmpdir(), 'outpost-insecure-devnet-'))
  server = await startMarketplace({dataDir, port: 0, host: address, logError: () => undefined})
  endpoint = server.endpoint
  configDir = mkdtempSync(join(tmpdir(), 'outpost-insecure-'))
  const init = await runCli(['init', '--main-key', '--endpoint', 'http://127.0.0.1:1'], {env: {OUTPOST_CONFIG_DIR: configDir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}})
  expect(init.exitCode, init.stderr).toBe(0)
  const config = join(configDir, 'outpost.toml')
  writeFileSync(config, readFileSync(config, 'utf8').replace('http://127.0.0.1:1', endpoint))
})

afterAll(async () => {
  await server?.stop()
  for (const dir of [dataDir, configDir]) if (dir) rmSync(dir, {recursive: true, force: true})
})

const env = (extra: Record<string, string> = {}) => ({OUTPOST_CONFIG_DIR: configDir, ...extra})

describe.skipIf(!address)('an http:// marketplace that is not loopback', () => {
  it('is refused before anything is sent, with the remedy, unless --allow-insecure-http or OUTPOST_ALLOW_INSECURE_HTTP is given', async () => {
    const refused = await runCli(['stake', 'info', '--json'], {env: env()})
    expect(refused.exitCode).toBe(3)
    expect(parseJson<{error: {code: string; suggestion: string}}>(refused).error).toMatchObject({code: 'insecure_endpoint', suggestion: expect.stringContaining('--allow-insecure-http')})

    // Allowed, the request reaches the devnet: its answer (the provider is not registered there) is what comes back.
    for (const allowed of [await runCli(['stake', 'info', '--allow-insecure-http', '--json'], {env: env()}), await runCli(['stake', 'info', '--json'], {env: env({OUTPOST_ALLOW_INSECURE_HTTP: 'true'})})]) {
      const body = parseJson<{error?: {code: string}}>(allowed)
      expect(body.error?.code).not.toBe('insecure_endpoint')
      expect(allowed.exitCode === 0 || body.error?.code === 'not_found', allowed.stdout).toBe(true)
    }
  })

  it('doctor fails it, and with plain HTTP allowed warns that requests cross the network in clear', async () => {
    type Report = {checks: {name: string; status: string; message: string; remedy?: string}[]}
    const endpointCheck = (report: Report) => report.checks.find((check) => check.name === 'endpoint')
    const refused = parseJson<Report>(await runCli(['doctor', '--json'], {env: env()}))
    expect(endpointCheck(refused)).toMatchObject({status: 'fail', message: expect.stringContaining('plain HTTP'), remedy: expect.stringContaining('allow_insecure_http')})
    const allowed = parseJson<Report>(await runCli(['doctor', '--allow-insecure-http', '--json'], {env: env()}))
    expect(endpointCheck(allowed)).toMatchObject({status: 'warn', message: expect.stringContaining('in clear')})
  })
})
