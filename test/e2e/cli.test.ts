import {copyFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {parseJson, runCli, tempConfigDir, TEST_PASSPHRASE} from '../support/cli.js'
import {RENTER_SSH_KEY} from '../support/ssh-keys.js'
import {HAVE_SCRIPT, runInTerminal} from '../support/terminal.js'
import {startDevnet} from '../support/devnet.js'

interface ErrorJson {
  error: {code: string; message: string; suggestion?: string}
}

const UNITS = 'write a number and one of the units ms, s, m, h, d or w (like 500ms, 30s, 15m, 24h, 7d, 2w)'
// Nothing listens here: a command that got past its flags would fail on the network instead, with another code.
const NOWHERE = 'http://127.0.0.1:9'
const FINGERPRINT = `SHA256:${'A'.repeat(43)}`

async function initialised(extra: string[] = []): Promise<{dir: string; env: Record<string, string>}> {
  const dir = tempConfigDir('outpost-cli-')
  const env = {OUTPOST_CONFIG_DIR: dir, SSH_AUTH_SOCK: '', OUTPOST_SSH_PASSWORD: '', OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
  const init = await runCli(['init', '--endpoint', NOWHERE, ...extra], {env})
  expect(init.exitCode, init.stderr).toBe(0)
  return {dir, env}
}

describe('the shared CLI parts (built CLI)', () => {
  it('every duration flag refuses a bare number as a usage error (exit 2) that lists the units', async () => {
    const {dir, env} = await initialised(['--main-key'])
    const cases: [string, string[]][] = [
      ['--grace', ['keys', 'rotate', '--main-key-file', join(dir, 'provider-main.key'), '--grace', '24']],
      ['--expires-in', ['register', '--main-key-file', join(dir, 'provider-main.key'), '--expires-in', '90']],
      ['--duration', ['benchmark', 'run', '--type', 'cpu', '--duration', '5']],
      ['--unbonding-period', ['devnet', 'start', '--port', '0', '--data-dir', join(dir, 'devnet'), '--unbonding-period', '30']],
      [
        '--closes-in',
        ['devnet', 'order', 'create', '--endpoint', NOWHERE, '--data-dir', join(dir, 'devnet'), '--cpu-cores', '1', '--memory-mb', '512', '--storage-gb', '1', '--max-price', '1', '--ssh-pubkey', RENTER_SSH_KEY, '--closes-in', '30'],
      ],
    ]
    for (const [flag, args] of cases) {
      const result = await runCli([...args, '--json'], {env, timeout: 30_000})
      expect(result.exitCode, `${args.join(' ')}\n${result.stdout}${result.stderr}`).toBe(2)
      const number = args.at(-1) ?? ''
      expect(parseJson<ErrorJson>(result).error).toMatchObject({code: 'invalid_duration', message: `${flag}: "${number}" is a number without a unit: ${UNITS}`})
    }
    const human = await runCli(['keys', 'rotate', '--main-key-file', join(dir, 'provider-main.key'), '--grace', '24'], {env})
    expect(human.stderr).toContain(`Error: --grace: "24" is a number without a unit: ${UNITS}\n→ for example --grace 30s`)
  })

  it('devnet start takes weeks like every other duration flag', async () => {
    const devnet = await startDevnet({dataDir: join(tempConfigDir('outpost-cli-devnet-'), 'data'), process: {args: ['--unbonding-period', '2w']}})
    expect(devnet.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    devnet.child.kill('SIGTERM')
    expect(await devnet.exited).toEqual({code: 0, signal: null})
  })

  it('register, keys rotate, setup proxmox and keys show refuse an agent key given as the main key, before anything else', async () => {
    const {dir, env} = await initialised()
    const agentKey = join(dir, 'agent.key')
    const proxmox = ['setup', 'proxmox', '--host', '127.0.0.1', '--ssh-port', '9', '--ssh-key', agentKey, '--host-key-fingerprint', FINGERPRINT, '--name', 'Acme', '--contact-email', 'ops@acme.example']
    for (const args of [['register'], ['keys', 'rotate'], proxmox, ['keys', 'show'], ['stake', 'deposit', '10']]) {
      const result = await runCli([...args, '--main-key-file', agentKey, '--json'], {env})
      expect(result.exitCode, `${args.join(' ')}\n${result.stdout}${result.stderr}`).toBe(2)
      expect(parseJson<ErrorJson>(result).error).toMatchObject({
        code: 'wrong_key_type',
        message: `${agentKey} holds a agent key, not the provider main key`,
        suggestion: 'point --main-key-file at the key made by `outpost init --main-key`',
      })
    }
    // OUTPOST_MAIN_KEY_FILE goes through the same check.
    const fromEnv = await runCli(['register', '--json'], {env: {...env, OUTPOST_MAIN_KEY_FILE: agentKey}})
    expect(parseJson<ErrorJson>(fromEnv).error.code).toBe('wrong_key_type')
  })

  it('the proxmox wizard checks the main key it finds beside the config too', async () => {
    const {dir, env} = await initialised()
    copyFileSync(join(dir, 'agent.key'), join(dir, 'provider-main.key'))
    const result = await runCli(
      ['setup', 'proxmox', '--host', '127.0.0.1', '--ssh-port', '9', '--ssh-key', join(dir, 'agent.key'), '--host-key-fingerprint', FINGERPRINT, '--name', 'Acme', '--contact-email', 'ops@acme.example', '--json'],
      {env},
    )
    expect(result.exitCode, result.stdout + result.stderr).toBe(2)
    expect(parseJson<ErrorJson>(result).error).toMatchObject({code: 'wrong_key_type', message: `${join(dir, 'provider-main.key')} holds a agent key, not the provider main key`})
  })

  it('keys rotate without a main key names what it needs (exit 2)', async () => {
    const {env} = await initialised()
    const result = await runCli(['keys', 'rotate', '--json'], {env})
    expect(result.exitCode).toBe(2)
    expect(parseJson<ErrorJson>(result).error).toMatchObject({code: 'main_key_required', message: 'rotating the agent key is signed with the provider main key, and no main key file was given'})
  })

  it('a mistyped command gets a suggestion and exit 2, off a terminal, in one, and with --json', async () => {
    const plain = await runCli(['regster', '--main-key-file', 'x'])
    expect(plain.exitCode).toBe(2)
    expect(plain.stderr).toBe('Error: `outpost regster` is not an outpost command\n→ did you mean `outpost register`? `outpost help` lists every command')
    const nested = await runCli(['devnet', 'contract', 'shw', '0'])
    expect(nested.exitCode).toBe(2)
    expect(nested.stderr).toContain('did you mean `outpost devnet contract show`?')
    const json = await runCli(['xyzzy', '--json'])
    expect(json.exitCode).toBe(2)
    expect(parseJson<ErrorJson>(json).error).toEqual({code: 'unknown_command', message: '`outpost xyzzy` is not an outpost command', suggestion: '`outpost help` lists every command'})
    if (HAVE_SCRIPT) {
      // In a terminal too: a suggestion, and no prompt that would run another command than the one typed.
      const terminal = await runInTerminal(['regster'], {env: {}})
      expect(terminal.exitCode).toBe(2)
      expect(terminal.output).toContain('did you mean `outpost register`?')
    }
  })

  it('-h is --help, for the CLI and for every command', async () => {
    for (const args of [['-h'], ['run', '-h'], ['devnet', 'contract', 'create', '-h']]) {
      const result = await runCli(args)
      expect(result.exitCode, args.join(' ')).toBe(0)
      expect(result.stdout).toContain('USAGE')
    }
  })

  it('a mistyped flag gets the flag it was probably meant to be', async () => {
    const result = await runCli(['doctor', '--verify-ap'])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toBe('Error: Nonexistent flag: --verify-ap\n→ did you mean --verify-api? see `outpost doctor --help`')
    const json = await runCli(['init', '--endpint', 'x', '--json'])
    expect(parseJson<ErrorJson>(json).error).toMatchObject({code: 'usage', suggestion: 'did you mean --endpoint? see `outpost init --help`'})
  })

  it('--json output uses one case convention: snake_case keys', async () => {
    const dir = tempConfigDir('outpost-cli-json-')
    const env = {OUTPOST_CONFIG_DIR: dir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
    const outputs: [string, string[]][] = [
      ['init', ['init', '--main-key', '--name', 'Json Co', '--contact-email', 'ops@json.example', '--offerings', 'small', '--json']],
      ['doctor', ['doctor', '--json']],
      ['keys show', ['keys', 'show', '--main-key-file', join(dir, 'provider-main.key'), '--json']],
      ['test-provision', ['test-provision', '--json']],
      ['service install --dry-run', ['service', 'install', '--dry-run', '--unit-dir', join(dir, 'units'), '--json']],
      ['service status', ['service', 'status', '--unit-dir', join(dir, 'units'), '--json']],
    ]
    // Free-form values a backend or a file supplies are not the CLI's keys.
    const camel = (value: unknown, path: string): string[] => {
      if (Array.isArray(value)) return value.flatMap((item, index) => camel(item, `${path}[${index}]`))
      if (value === null || typeof value !== 'object') return []
      return Object.entries(value).flatMap(([key, item]) => [...(/[A-Z]/.test(key) ? [`${path}.${key}`] : []), ...(['details', 'data', 'credentials'].includes(key) ? [] : camel(item, `${path}.${key}`))])
    }
    for (const [what, args] of outputs) {
      const result = await runCli(args, {env})
      expect(result.exitCode, `${what}: ${result.stdout}${result.stderr}`).toBe(0)
      expect(camel(parseJson(result), what)).toEqual([])
    }
  })

  it('colour follows FORCE_COLOR, and NO_COLOR wins over it', async () => {
    const dir = tempConfigDir('outpost-cli-colour-')
    writeFileSync(join(dir, 'outpost.toml'), 'not toml at all [')
    const forced = await runCli(['doctor'], {env: {OUTPOST_CONFIG_DIR: dir, NO_COLOR: '', FORCE_COLOR: '1'}})
    expect(forced.stdout).toContain('\u001B[31m✗\u001B[39m config')
    const plain = await runCli(['doctor'], {env: {OUTPOST_CONFIG_DIR: dir, NO_COLOR: '1', FORCE_COLOR: '1'}})
    expect(plain.stdout).toMatch(/^✗ config/m)
    expect(plain.stdout).not.toContain('\u001B[')
  })
})
