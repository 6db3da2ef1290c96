import {mkdtempSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {readKeyFile} from '../../src/core/keys.js'
import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {parseJson, runCli, tempConfigDir, TEST_PASSPHRASE} from '../support/cli.js'
import {HAVE_SCRIPT, runInTerminal} from '../support/terminal.js'

/** keys list, revoke, export and import: the built CLI against a real devnet on loopback, on and off a terminal. */

interface ListedJson {
  provider_pubkey: string
  delegations: {agent_pubkey: string; state: string; this_host: boolean; expires_at: number | null; last_seen_at?: number | null; label: string}[]
}

let server: MarketplaceServer
let dir: string
let env: Record<string, string>
let agentPubkey: string
let mainPubkey: string

beforeAll(async () => {
  server = await startMarketplace({dataDir: mkdtempSync(join(tmpdir(), 'outpost-devnet-')), port: 0, host: '127.0.0.1'})
  dir = tempConfigDir()
  env = {OUTPOST_CONFIG_DIR: dir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
  expect((await runCli(['init', '--main-key', '--endpoint', server.endpoint, '--name', 'Acme', '--contact-email', 'ops@acme.example'], {env})).exitCode).toBe(0)
  env = {...env, OUTPOST_MAIN_KEY_FILE: join(dir, 'provider-main.key')}
  const registered = await runCli(['register', '--json', '--expires-in', '90d'], {env})
  expect(registered.exitCode, registered.stderr).toBe(0)
  const result = parseJson<{provider_pubkey: string; agent_pubkey: string}>(registered)
  agentPubkey = result.agent_pubkey
  mainPubkey = result.provider_pubkey
})

afterAll(async () => {
  await server?.stop()
})

/** Delegates a second agent key (as another host's would be) that expires in `days`. */
async function secondAgent(days: number): Promise<string> {
  const other = tempConfigDir()
  const otherEnv = {...env, OUTPOST_CONFIG_DIR: other}
  expect((await runCli(['init', '--endpoint', server.endpoint, '--name', 'Acme', '--contact-email', 'ops@acme.example'], {env: otherEnv})).exitCode).toBe(0)
  const registered = await runCli(['register', '--json', '--expires-in', `${days}d`, '--label', `host-${days}d`], {env: otherEnv})
  expect(registered.exitCode, registered.stderr).toBe(0)
  return parseJson<{agent_pubkey: string}>(registered).agent_pubkey
}

describe('outpost keys list', () => {
  it("lists the delegations with state, expiry and the last heartbeat each key signed, read with the agent key", async () => {
    const before = parseJson<ListedJson>(await runCli(['keys', 'list', '--json'], {env: {...env, OUTPOST_MAIN_KEY_FILE: ''}}))
    expect(before.provider_pubkey).toBe(mainPubkey)
    expect(before.delegations).toEqual([expect.objectContaining({agent_pubkey: agentPubkey, state: 'active', this_host: true, last_seen_at: null})])

    const once = await runCli(['run', '--once'], {env})
    expect(once.exitCode, once.stderr).toBe(0)
    const after = parseJson<ListedJson>(await runCli(['keys', 'list', '--json'], {env}))
    const seen = after.delegations[0]?.last_seen_at ?? 0
    expect(Math.abs(Date.now() - seen)).toBeLessThan(120_000)

    const expiring = await secondAgent(3)
    const listed = parseJson<ListedJson>(await runCli(['keys', 'list', '--json', '--main-key-file', join(dir, 'provider-main.key')], {env}))
    expect(listed.delegations.find((delegation) => delegation.agent_pubkey === expiring)).toMatchObject({state: 'expiring', this_host: false, label: 'host-3d'})

    const human = await runCli(['keys', 'list'], {env})
    expect(human.exitCode).toBe(0)
    expect(human.stdout).toContain(`${agentPubkey.slice(0, 16)}… (this host)`)
    expect(human.stdout).toMatch(/expiring .*\(in 3\.0 days\)/)
    expect(human.stdout).toContain('never') // the second key signed no heartbeat yet
  }, 180_000)
})

describe('outpost keys revoke', () => {
  it('needs --yes off a terminal and with --json; revoking ends the key at once and twice changes nothing', async () => {
    const victim = await secondAgent(30)
    const refused = await runCli(['keys', 'revoke', victim], {env})
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toContain('revoking an agent key needs confirmation and there is no terminal to ask')
    expect(parseJson(await runCli(['keys', 'revoke', victim, '--json'], {env}))).toMatchObject({error: {code: 'confirmation_required'}})

    const revoked = await runCli(['keys', 'revoke', victim, '--yes', '--json'], {env})
    expect(revoked.exitCode, revoked.stderr).toBe(0)
    expect(parseJson(revoked)).toMatchObject({agent_pubkey: victim, already_revoked: false})
    const listed = parseJson<ListedJson>(await runCli(['keys', 'list', '--json'], {env}))
    expect(listed.delegations.find((delegation) => delegation.agent_pubkey === victim)).toMatchObject({state: 'revoked'})
    const again = await runCli(['keys', 'revoke', victim], {env})
    expect(again.exitCode).toBe(0)
    expect(again.stdout).toContain('was revoked already')
  })

  it('refuses what is no key, a key never delegated, and a missing main key, each with a remedy', async () => {
    const notKey = await runCli(['keys', 'revoke', 'abc', '--yes'], {env})
    expect(notKey.exitCode).toBe(2)
    expect(notKey.stderr).toContain('abc is not an agent public key')
    const unknown = await runCli(['keys', 'revoke', 'ab'.repeat(32), '--yes'], {env})
    expect(unknown.exitCode).toBe(1)
    expect(unknown.stderr).toContain('see the delegated keys with `outpost keys list`')
    const noMain = await runCli(['keys', 'revoke', agentPubkey, '--yes'], {env: {...env, OUTPOST_MAIN_KEY_FILE: ''}})
    expect(noMain.exitCode).toBe(2)
    expect(noMain.stderr).toContain('revoking an agent key is signed with the provider main key')
  })

  it('in a terminal, asks first and warns when it is this host\'s key: "n" changes nothing', async (context) => {
    if (!HAVE_SCRIPT) context.skip()
    const declined = await runInTerminal(['keys', 'revoke', agentPubkey], {env, steps: [{waitFor: '(y/N)', send: 'n\r'}]})
    expect(declined.output).toContain("this is the agent key of this config")
    expect(declined.output).toContain('revoking an agent key cancelled: nothing was changed')
    const listed = parseJson<ListedJson>(await runCli(['keys', 'list', '--json'], {env}))
    expect(listed.delegations.find((delegation) => delegation.agent_pubkey === agentPubkey)).toMatchObject({state: 'active'})
  })
})

describe('outpost keys export and import', () => {
  it('writes an encrypted 0600 backup that opens as the main key, refuses to overwrite it, and restores it', async () => {
    const work = mkdtempSync(join(tmpdir(), 'outpost-backup-'))
    const backup = join(work, 'main.backup')
    const exported = await runCli(['keys', 'export', backup, '--json'], {env})
    expect(exported.exitCode, exported.stderr).toBe(0)
    expect(parseJson(exported)).toMatchObject({file: backup, public_key: mainPubkey, encrypted: true})
    expect(statSync(backup).mode & 0o777).toBe(0o600)
    const text = readFileSync(backup, 'utf8')
    expect(JSON.parse(text)).toHaveProperty('encrypted')
    expect(text).not.toMatch(/secret_key/)
    const opened = await readKeyFile(backup, {mainKey: true, passphrase: () => TEST_PASSPHRASE})
    expect(Buffer.from(opened.publicKey).toString('hex')).toBe(mainPubkey)

    const again = await runCli(['keys', 'export', backup], {env})
    expect(again.exitCode).toBe(1)
    expect(again.stderr).toContain(`${backup} exists already`)
    expect(again.stderr).toContain('--force')

    const restored = join(work, 'restored.key')
    const wrong = await runCli(['keys', 'import', backup, '--to', restored], {env: {...env, OUTPOST_KEY_PASSPHRASE: 'not it'}})
    expect(wrong.exitCode).toBe(3)
    expect(wrong.stderr).toContain('wrong passphrase')
    const imported = await runCli(['keys', 'import', backup, '--to', restored, '--json'], {env})
    expect(imported.exitCode, imported.stderr).toBe(0)
    expect(parseJson(imported)).toMatchObject({file: restored, public_key: mainPubkey, encrypted: true})
    expect(statSync(restored).mode & 0o777).toBe(0o600)
    expect(readFileSync(restored, 'utf8')).not.toMatch(/secret_key/)
    // The restored key signs: keys list with it as the main key works.
    expect((await runCli(['keys', 'list', '--json', '--main-key-file', restored], {env})).exitCode).toBe(0)

    const overwrite = await runCli(['keys', 'import', backup, '--to', restored], {env})
    expect(overwrite.exitCode).toBe(1)
    expect(overwrite.stderr).toContain('exists already')
    const forced = parseJson<{replaced: string}>(await runCli(['keys', 'import', backup, '--to', restored, '--force', '--json'], {env}))
    expect(forced.replaced).toMatch(/restored\.key\.bak-/)
  })

  it('makes a plain main key into an encrypted backup with --passphrase-file, and never imports a plain file', async () => {
    const work = mkdtempSync(join(tmpdir(), 'outpost-backup-'))
    const plainDir = tempConfigDir()
    expect((await runCli(['init', '--main-key', '--no-encrypt', '--endpoint', server.endpoint, '--name', 'B', '--contact-email', 'b@b.example'], {env: {OUTPOST_CONFIG_DIR: plainDir}})).exitCode).toBe(0)
    const plainKey = join(plainDir, 'provider-main.key')
    const passFile = join(work, 'pass')
    writeFileSync(passFile, 'backup passphrase\n', {mode: 0o600})
    const noPass = await runCli(['keys', 'export', join(work, 'b'), '--main-key-file', plainKey], {env: {OUTPOST_CONFIG_DIR: plainDir}})
    expect(noPass.exitCode).toBe(2)
    expect(noPass.stderr).toContain('--passphrase-file')
    const made = await runCli(['keys', 'export', join(work, 'b'), '--main-key-file', plainKey, '--passphrase-file', passFile, '--json'], {env: {OUTPOST_CONFIG_DIR: plainDir}})
    expect(made.exitCode, made.stderr).toBe(0)
    expect(JSON.parse(readFileSync(join(work, 'b'), 'utf8'))).toHaveProperty('encrypted')

    const plainImport = await runCli(['keys', 'import', plainKey, '--to', join(work, 'c')], {env: {OUTPOST_CONFIG_DIR: plainDir}})
    expect(plainImport.exitCode).toBe(2)
    expect(plainImport.stderr).toContain('is a plain key file, not an encrypted backup')
  })

  it('in a terminal, export of a plain key asks for a new passphrase twice', async (context) => {
    if (!HAVE_SCRIPT) context.skip()
    const work = mkdtempSync(join(tmpdir(), 'outpost-backup-'))
    const plainDir = tempConfigDir()
    expect((await runCli(['init', '--main-key', '--no-encrypt', '--endpoint', server.endpoint, '--name', 'C', '--contact-email', 'c@c.example'], {env: {OUTPOST_CONFIG_DIR: plainDir}})).exitCode).toBe(0)
    const target = join(work, 'tty.backup')
    const result = await runInTerminal(['keys', 'export', target], {
      env: {OUTPOST_CONFIG_DIR: plainDir},
      steps: [
        {waitFor: 'Key passphrase', send: 'typed here\r'},
        {waitFor: 'Repeat the passphrase', send: 'typed here\r'},
      ],
    })
    expect(result.exitCode, result.output).toBe(0)
    expect(result.output).toContain('encrypted backup of main key')
    await expect(readKeyFile(target, {mainKey: true, passphrase: () => 'typed here'})).resolves.toBeDefined()
  })
})
