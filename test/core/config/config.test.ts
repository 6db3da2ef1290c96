import {mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {ENV_KEYS} from '../../../src/core/config/env.js'
import {loadConfig, validateConfig} from '../../../src/core/config/load.js'
import {UserError} from '../../../src/core/errors.js'

const VALID = `
[marketplace]
endpoint = "http://127.0.0.1:8787"

[agent]
heartbeat_seconds = 30

[provisioner]
type = "local"

[[offerings]]
name = "small"
product_type = "compute"
cpu_cores = 2
memory_mb = 2048
storage_gb = 20
price_per_hour = "0.05"
`

const tempDirs: string[] = []
afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, {recursive: true, force: true})
})

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-config-'))
  tempDirs.push(dir)
  return dir
}

function write(text: string): string {
  const file = join(tempDir(), 'outpost.toml')
  writeFileSync(file, text)
  return file
}

function errorOf(action: () => unknown): UserError {
  try {
    action()
  } catch (error) {
    if (error instanceof UserError) return error
    throw error
  }
  throw new Error('expected a UserError')
}

describe('config', () => {
  it('loads a valid file with defaults filled in and paths resolved next to the file', () => {
    const file = write(VALID)
    const {config, paths} = loadConfig(file, {})
    expect(config.agent.heartbeat_seconds).toBe(30)
    expect(config.agent.long_poll_wait_seconds).toBe(25)
    expect(config.metrics.listen).toBe('127.0.0.1:9464')
    expect(config.offerings[0]?.gpu_count).toBe(0)
    expect(paths.keyFile).toBe(join(file, '..', 'agent.key'))
  })

  it('gives file:line:column for a TOML syntax error', () => {
    const error = errorOf(() => loadConfig(write('[marketplace]\nendpoint = "http://x"\nbroken = = 3\n'), {}))
    expect(error.message).toMatch(/outpost\.toml:3:\d+: TOML syntax error/)
    expect(error.exit).toBe(3)
  })

  it('names the key, the value and what was expected for a schema error', () => {
    const error = errorOf(() => loadConfig(write(VALID.replace('heartbeat_seconds = 30', 'heartbeat_seconds = "soon"')), {}))
    expect(error.message).toContain('agent.heartbeat_seconds')
    expect(error.message).toContain('"soon"')
    expect(error.message).toMatch(/expected number/)
  })

  it('refuses an unknown key with a suggestion', () => {
    const error = errorOf(() => loadConfig(write(VALID.replace('heartbeat_seconds', 'hearbeat_seconds')), {}))
    expect(error.message).toContain('agent.hearbeat_seconds: unknown key (did you mean "heartbeat_seconds"?)')
  })

  it('refuses placeholder values', () => {
    const error = errorOf(() => loadConfig(write(VALID.replace('"small"', '"CHANGEME"')), {}))
    expect(error.message).toMatch(/offerings\[0\]\.name: still a placeholder/)
    const angle = errorOf(() => loadConfig(write(VALID.replace('http://127.0.0.1:8787', '<your endpoint>')), {}))
    expect(angle.message).toMatch(/marketplace\.endpoint: still a placeholder/)
  })

  it('names a missing section', () => {
    const error = errorOf(() => loadConfig(write('[provisioner]\ntype = "local"\n'), {}))
    expect(error.message).toContain('[marketplace]: missing section')
  })

  it('lets OUTPOST_<SECTION>_<KEY> override every key, and names the variable in errors', () => {
    const file = write(VALID)
    const {config} = loadConfig(file, {OUTPOST_AGENT_HEARTBEAT_SECONDS: '15', OUTPOST_METRICS_ENABLED: 'false', OUTPOST_MARKETPLACE_ENDPOINT: 'https://api.example.net'})
    expect(config.agent.heartbeat_seconds).toBe(15)
    expect(config.metrics.enabled).toBe(false)
    expect(config.marketplace.endpoint).toBe('https://api.example.net')
    const error = errorOf(() => loadConfig(file, {OUTPOST_AGENT_LOCK_TTL_SECONDS: 'abc'}))
    expect(error.message).toContain('from OUTPOST_AGENT_LOCK_TTL_SECONDS')
    expect(ENV_KEYS.map((key) => key.variable)).toEqual(
      expect.arrayContaining(['OUTPOST_MARKETPLACE_PROVIDER_PUBKEY', 'OUTPOST_AGENT_KEY_FILE', 'OUTPOST_PROVISIONER_TYPE', 'OUTPOST_LOGGING_LEVEL']),
    )
  })

  it('says what to do when the file is missing', () => {
    const error = errorOf(() => loadConfig(join(tmpdir(), 'nope', 'outpost.toml'), {}))
    expect(error.code).toBe('config_missing')
    expect(error.suggestion).toMatch(/outpost init/)
  })
})

describe('config robustness (each a case a mutated config once got wrong)', () => {
  it('reads a CRLF file with comments, and one with a byte-order mark, like the LF file', () => {
    const commented = `# header comment\n${VALID.replace('heartbeat_seconds = 30', 'heartbeat_seconds = 30 # trailing comment')}`
    const expected = loadConfig(write(commented), {}).config
    expect(loadConfig(write(commented.replaceAll('\n', '\r\n')), {}).config).toEqual(expected)
    expect(loadConfig(write(`\uFEFF${commented}`), {}).config).toEqual(expected)
  })

  it('names the line of a UTF-16 file, and of a byte that is not UTF-8', () => {
    const file = write('')
    writeFileSync(file, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(VALID, 'utf16le')]))
    expect(errorOf(() => loadConfig(file, {}))).toMatchObject({exit: 3, message: expect.stringContaining('UTF-16')})
    writeFileSync(file, Buffer.from(VALID.replace('"small"', '"sm\u00ffall"'), 'latin1'))
    expect(errorOf(() => loadConfig(file, {})).message).toContain('outpost.toml:12: not UTF-8 text')
  })

  it('refuses an integer beyond 2^53 with the key and its line, not a crash', () => {
    const error = errorOf(() => loadConfig(write(VALID.replace('heartbeat_seconds = 30', 'heartbeat_seconds = 99999999999999999999')), {}))
    expect(error.exit).toBe(3)
    expect(error.message).toContain('line 6: agent.heartbeat_seconds: integer out of range')
    expect(error.message).not.toMatch(/BigInt|7766279631452241919/)
  })

  it('refuses a listen address whose port is out of range, and takes host names', () => {
    for (const listen of ['0.0.0.0:99999', '127.0.0.1:65536', '999.0.0.1:80', 'no port']) {
      const error = errorOf(() => loadConfig(write(`${VALID}\n[metrics]\nlisten = "${listen}"\n`), {}))
      expect(error.message).toContain('line 20: metrics.listen: expected host:port')
    }
    expect(loadConfig(write(`${VALID}\n[metrics]\nlisten = "localhost:9464"\n`), {}).config.metrics.listen).toBe('localhost:9464')
  })

  it('refuses two offerings with one name, naming the second', () => {
    const offering = VALID.slice(VALID.indexOf('[[offerings]]'))
    const error = errorOf(() => loadConfig(write(`${VALID}\n${offering}`), {}))
    expect(error.message).toContain('line 20: offerings[1].name: duplicate offering name: offerings[0] has it too')
  })

  it('refuses a control character anywhere, but tab and newline in a command argument', () => {
    const named = errorOf(() => loadConfig(write(`${VALID}\n[provider]\nname = "Ac\\u0000me"\ncontact_email = "ops@example.net"\n`), {}))
    expect(named.message).toContain('line 20: provider.name: contains the control character U+0000')
    const escape = errorOf(() => loadConfig(write(VALID.replace('"small"', '"sm\\u001b[31mall"')), {}))
    expect(escape.message).toContain('offerings[0].name: contains the control character U+001B')
    const command = '[provisioner.local]\ncommand = ["/bin/sh", "-c", "echo one\\n\\techo two"]\n'
    expect(loadConfig(write(`${VALID}\n${command}`), {}).config.provisioner.local.command?.[2]).toBe('echo one\n\techo two')
  })

  it('refuses a state dir or key file on a kernel filesystem, through a symlink too, at once', () => {
    const dir = tempDir()
    symlinkSync('/proc/self', join(dir, 'disguised'))
    for (const [key, value] of [['state_dir', '/proc/self'], ['state_dir', '/sys/kernel/outpost'], ['key_file', '/proc/self/status'], ['state_dir', join(dir, 'disguised', 'state')]]) {
      const error = errorOf(() => loadConfig(write(VALID.replace('heartbeat_seconds = 30', `${key} = "${value}"`)), {}))
      expect(error.message).toMatch(new RegExp(`line 6: agent\\.${key}: /(proc|sys)/.* is on the kernel's (proc|sys) filesystem`))
    }
  })

  it('refuses a state dir that is a file, and a config path that is not a regular file', () => {
    const file = write(VALID.replace('heartbeat_seconds = 30', 'state_dir = "outpost.toml/state"'))
    expect(errorOf(() => loadConfig(file, {})).message).toMatch(/agent\.state_dir: .*outpost\.toml is not a directory/)
    expect(errorOf(() => loadConfig('/dev/zero', {}))).toMatchObject({exit: 3, code: 'config_unreadable'})
    const dir = tempDir()
    mkdirSync(join(dir, 'outpost.toml'))
    expect(errorOf(() => loadConfig(join(dir, 'outpost.toml'), {}))).toMatchObject({exit: 3, code: 'config_unreadable'})
  })

  it('names the line of a key in an array table, a quoted key and a missing key', () => {
    const second = '\n[[offerings]]\nname = "big"\nproduct_type = "compute"\ncpu_cores = "many"\nmemory_mb = 2048\nstorage_gb = 20\nprice_per_hour = "1"\n'
    expect(errorOf(() => loadConfig(write(VALID + second), {})).message).toContain('line 22: offerings[1].cpu_cores: Invalid input: expected number')
    expect(errorOf(() => loadConfig(write(VALID.replace('heartbeat_seconds', '"heartbeat seconds"')), {})).message).toContain('line 6: agent."heartbeat seconds": unknown key')
    expect(errorOf(() => loadConfig(write(VALID.replace('cpu_cores = 2\n', '')), {})).message).toContain('line 11: offerings[0].cpu_cores: missing')
  })

  it('never shows the value of a secret field, from the file or the environment', () => {
    const hetzner = `${VALID.replace('type = "local"', 'type = "hetzner"')}\n[provisioner.hetzner]\ntoken = "leaked-TOKEN-value"\n`
    const fromFile = errorOf(() => loadConfig(write(hetzner), {}))
    expect(fromFile.message).toContain('line 20: provisioner.hetzner.token: expected a Hetzner Cloud API token')
    expect(fromFile.message).not.toContain('leaked')
    const good = hetzner.replace('leaked-TOKEN-value', 'a'.repeat(64))
    const fromEnv = errorOf(() => loadConfig(write(good), {OUTPOST_PROVISIONER_HETZNER_TOKEN: 'env-leaked-TOKEN'}))
    expect(fromEnv.message).toContain('provisioner.hetzner.token: expected a Hetzner Cloud API token (64 letters and digits) (value not shown: secret, from OUTPOST_PROVISIONER_HETZNER_TOKEN)')
    expect(fromEnv.message).not.toContain('env-leaked')
    const table = errorOf(() => validateConfig({marketplace: {endpoint: 'http://x'}, provisioner: {type: 'local', hetzner: 'leaked-as-a-string'}}, 'outpost.toml', {}))
    expect(table.message).not.toContain('leaked')
    const webhook = errorOf(() => loadConfig(write(`${VALID}\n[provisioner.manual]\nwebhook_url = "hooks.example/T0/secret-path"\n`), {}))
    expect(webhook.message).toContain('provisioner.manual.webhook_url')
    expect(webhook.message).not.toContain('secret-path')
  })
})

describe('config parser fuzz', () => {
  // A deterministic generator, so a failure names a reproducible case.
  function* mutations(seed: number, count: number): Generator<string> {
    let state = seed
    const random = () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31)
    const alphabet = ['"', '[', ']', '=', '\n', '#', '.', '{', '}', ',', '\\', 'x', '0', '-', ' ', "'", '\u0000', 'é', 'true', '[[', '"""']
    for (let index = 0; index < count; index++) {
      const chars = [...VALID]
      const edits = 1 + Math.floor(random() * 4)
      for (let edit = 0; edit < edits; edit++) {
        const at = Math.floor(random() * chars.length)
        const kind = random()
        if (kind < 0.4) chars.splice(at, 1)
        else if (kind < 0.8) chars.splice(at, 0, alphabet[Math.floor(random() * alphabet.length)] ?? '')
        else chars.splice(at, Math.floor(random() * 20))
      }
      yield chars.join('')
    }
  }

  it('never crashes on 2000 mutated files: each loads or fails with a UserError', () => {
    const file = write('')
    let failures = 0
    for (const text of mutations(42, 2000)) {
      writeFileSync(file, text)
      try {
        loadConfig(file, {})
      } catch (error) {
        if (!(error instanceof UserError)) throw new Error(`not a UserError for input:\n${text}\n${String(error)}`)
        expect(error.message.length).toBeGreaterThan(0)
        failures++
      }
    }
    expect(failures).toBeGreaterThan(100)
  })
})
