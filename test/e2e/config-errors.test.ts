import {rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {createKeyFile} from '../../src/core/keys.js'
import {mutationCase, type MutationCase} from '../core/config/config-mutations.js'
import {parseJson, runCli, tempConfigDir} from '../support/cli.js'

interface DoctorJson {
  ok: boolean
  checks: {name: string; status: string; message: string}[]
}

const SEED = 20_261_201
const dirs: string[] = []
afterAll(() => {
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

/** A config dir holding the case's file and a valid agent key, so a valid config passes doctor. */
function configDir(content: string | Uint8Array): {dir: string; file: string} {
  const dir = tempConfigDir('outpost-config-errors-')
  dirs.push(dir)
  createKeyFile(join(dir, 'agent.key'), 'agent')
  const file = join(dir, 'outpost.toml')
  writeFileSync(file, content, {mode: 0o600})
  return {dir, file}
}

/** The first case of a kind in the seeded sequence (on the local backend when it must load, so doctor can pass). */
function firstCase(kind: string): MutationCase {
  for (let index = 0; ; index++) {
    const testCase = mutationCase(SEED, index, kind)
    if (testCase.expect.outcome === 'invalid' || testCase.name.endsWith('of local')) return testCase
  }
}

const CLI_KINDS = ['neutral', 'stateDir', 'outOfRange', 'listen', 'controlCharacter', 'duplicateOffering', 'secret', 'utf16', 'unknownKey', 'environment', 'deepNesting']

describe('outpost doctor --json on mutated configs (built CLI)', () => {
  it.each(CLI_KINDS.map((kind) => [kind, firstCase(kind)] as const))('%s: exits 0 or 3 (never 70, never a hang), JSON that parses, the key named', async (_kind, testCase) => {
    const {file} = configDir(testCase.content)
    const result = await runCli(['doctor', '--json', '--config', file], {env: testCase.env, timeout: 60_000})
    const output = `${testCase.name}\n${result.stdout}\n${result.stderr}`
    const report = parseJson<DoctorJson>(result)
    const config = report.checks.find((check) => check.name === 'config')
    if (testCase.expect.outcome === 'valid') {
      expect(result.exitCode, output).toBe(0)
      expect(config?.status).toBe('pass')
      return
    }
    expect(result.exitCode, output).toBe(3)
    expect(config?.status).toBe('fail')
    expect(config?.message, output).toContain(testCase.expect.key)
    if (testCase.expect.variable) expect(config?.message).toContain(testCase.expect.variable)
    if (testCase.expect.lineWord !== undefined) expect(config?.message).toMatch(/line \d+: /)
    if (testCase.expect.hidden) expect(result.stdout + result.stderr).not.toContain(testCase.expect.hidden)
  })
})

describe('config errors never show a secret (built CLI)', () => {
  const HETZNER = ['[marketplace]', 'endpoint = "http://127.0.0.1:9"', '', '[provisioner]', 'type = "hetzner"', '', '[provisioner.hetzner]']
  const PROXMOX = ['[marketplace]', 'endpoint = "http://127.0.0.1:9"', '', '[provisioner]', 'type = "proxmox"', '', '[provisioner.proxmox]', 'host = "127.0.0.1"', 'token_id = "outpost@pve!agent"', 'template_vmid = 9000']
  const cases = [
    {what: 'a Hetzner token in the file', lines: [...HETZNER, 'token = "hcloud-Leaked-Token-0123"'], env: {}, secret: 'hcloud-Leaked-Token-0123', key: 'line 8: provisioner.hetzner.token'},
    {what: 'a Hetzner token from the environment', lines: [...HETZNER, `token = "${'a'.repeat(64)}"`], env: {OUTPOST_PROVISIONER_HETZNER_TOKEN: 'env-Leaked-Token-4567'}, secret: 'env-Leaked-Token-4567', key: 'OUTPOST_PROVISIONER_HETZNER_TOKEN'},
    {what: 'a Proxmox token secret in the file', lines: [...PROXMOX, 'token_secret = "PVE-leaked-secret-89ab"'], env: {}, secret: 'PVE-leaked-secret-89ab', key: 'line 11: provisioner.proxmox.token_secret'},
    {what: 'a Proxmox token secret from the environment', lines: [...PROXMOX, 'token_secret = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"'], env: {OUTPOST_PROVISIONER_PROXMOX_TOKEN_SECRET: 'env-pve-leak-cdef'}, secret: 'env-pve-leak-cdef', key: 'OUTPOST_PROVISIONER_PROXMOX_TOKEN_SECRET'},
  ]

  it.each(cases.map((testCase, index) => ({...testCase, runFlags: index % 2 === 0 ? [] : ['--json']})))('doctor --json and run name the key of a malformed $what, never its value', async ({lines, env, secret, key, runFlags}) => {
    const {file} = configDir(lines.join('\n') + '\n')
    const doctor = await runCli(['doctor', '--json', '--config', file], {env})
    expect(doctor.exitCode).toBe(3)
    expect(parseJson<DoctorJson>(doctor).checks[0]?.message).toContain(key)
    expect(doctor.stdout + doctor.stderr).not.toContain(secret)

    const run = await runCli(['run', '--once', ...runFlags, '--config', file], {env})
    expect(run.exitCode).toBe(3)
    expect(run.stdout + run.stderr).toContain(key)
    expect(run.stdout + run.stderr).not.toContain(secret)
  })
})
