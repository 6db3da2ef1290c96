import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {ENV_KEYS} from '../../../src/core/config/env.js'
import {loadConfig} from '../../../src/core/config/load.js'
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

function write(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'outpost-config-')), 'outpost.toml')
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
