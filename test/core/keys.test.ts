import {chmodSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {UserError} from '../../src/core/errors.js'
import {toHex} from '../../src/core/hex.js'
import {createKeyFile, readKeyFile} from '../../src/core/keys.js'

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'outpost-keys-'))
}

describe('key files', () => {
  it('are written with mode 0600 and read back to the same key', async () => {
    const path = join(tempDir(), 'agent.key')
    const {key} = createKeyFile(path, 'agent')
    expect(statSync(path).mode & 0o777).toBe(0o600)
    const content = JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>
    expect(Object.keys(content).sort()).toEqual(['public_key', 'secret_key', 'type'])
    const read = await readKeyFile(path)
    expect(toHex(read.publicKey)).toBe(toHex(key.publicKey))
    expect(read.type).toBe('agent')
  })

  it('are never overwritten without force, and force keeps a backup', () => {
    const dir = tempDir()
    const path = join(dir, 'agent.key')
    const first = readFileSync((createKeyFile(path, 'agent'), path), 'utf8')
    expect(() => createKeyFile(path, 'agent')).toThrow(UserError)
    const {backup} = createKeyFile(path, 'agent', {force: true})
    expect(backup).toMatch(/agent\.key\.bak-\d{8}T\d{6}Z$/)
    expect(readFileSync(backup as string, 'utf8')).toBe(first)
    expect(readFileSync(path, 'utf8')).not.toBe(first)
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([])
  })

  it('refuse to open when group or others can read them, naming the chmod', async () => {
    const path = join(tempDir(), 'agent.key')
    createKeyFile(path, 'agent')
    chmodSync(path, 0o644)
    await expect(readKeyFile(path)).rejects.toMatchObject({code: 'key_permissions', suggestion: `run: chmod 600 ${path}`})
  })

  it('encrypt with a passphrase, and open only with the right one', async () => {
    const path = join(tempDir(), 'main.key')
    const {key} = createKeyFile(path, 'provider-main', {passphrase: 'hunter2 but longer'})
    const text = readFileSync(path, 'utf8')
    expect(text).not.toContain(toHex(key.seed))
    expect(JSON.parse(text)).toHaveProperty('encrypted.kdf', 'scrypt')
    await expect(readKeyFile(path)).rejects.toMatchObject({code: 'passphrase_required'})
    await expect(readKeyFile(path, {passphrase: () => 'wrong'})).rejects.toMatchObject({code: 'wrong_passphrase'})
    const opened = await readKeyFile(path, {passphrase: () => 'hunter2 but longer'})
    expect(toHex(opened.seed)).toBe(toHex(key.seed))
  })

  it('name the problem in a malformed or edited file', async () => {
    const path = join(tempDir(), 'agent.key')
    writeFileSync(path, '{"type":"agent","public_key":"00"}', {mode: 0o600})
    await expect(readKeyFile(path)).rejects.toThrow(/malformed/)
    writeFileSync(path, 'not json', {mode: 0o600})
    await expect(readKeyFile(path)).rejects.toThrow(/is not an Outpost key file \(not JSON\)/)
    // An SSH key given as the main key is named as such, and the remedy never replaces another key (init --force).
    writeFileSync(path, '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----\n', {mode: 0o600})
    await expect(readKeyFile(path, {mainKey: true})).rejects.toMatchObject({
      message: `${path} is an SSH key, not an Outpost key file`,
      exit: 2,
      suggestion: expect.not.stringContaining('--force'),
    })
    const good = join(tempDir(), 'good.key')
    createKeyFile(good, 'agent')
    const content = JSON.parse(readFileSync(good, 'utf8')) as Record<string, string>
    writeFileSync(path, JSON.stringify({...content, public_key: 'ab'.repeat(32)}), {mode: 0o600})
    await expect(readKeyFile(path)).rejects.toThrow(/does not match/)
  })

  it('refuse scrypt parameters below the minimum, or so large that a hostile file could hang or exhaust memory', async () => {
    const path = join(tempDir(), 'main.key')
    createKeyFile(path, 'provider-main', {passphrase: 'correct horse'})
    const content = JSON.parse(readFileSync(path, 'utf8')) as {encrypted: Record<string, unknown>}
    const withParams = (params: Record<string, number>) =>
      writeFileSync(path, JSON.stringify({...content, encrypted: {...content.encrypted, ...params}}), {mode: 0o600})
    const refusals: [Record<string, number>, RegExp][] = [
      [{n: 2}, /encrypted\.n: expected scrypt cost n of at least 16384/],
      [{n: 2 ** 13}, /encrypted\.n: expected scrypt cost n of at least/],
      [{r: 1}, /encrypted\.r: expected scrypt block size r of at least 8/],
      [{n: 3 * 2 ** 14}, /encrypted\.n: expected scrypt cost n to be a power of two/],
      [{n: 2 ** 30}, /encrypted\.n: expected scrypt cost n of at most/],
      [{p: 2 ** 20}, /encrypted\.p: expected scrypt parallelism p of at most 16/],
      [{n: 2 ** 18, r: 16}, /encrypted\.r: expected scrypt memory 128·n·r of at most 256 MiB/],
      [{n: 2 ** 17, r: 8, p: 16}, /encrypted\.n: expected scrypt work n·r·p of at most/],
    ]
    for (const [params, message] of refusals) {
      withParams(params)
      await expect(readKeyFile(path, {passphrase: () => 'correct horse'}), JSON.stringify(params)).rejects.toMatchObject({code: 'key_invalid', exit: 3, message: expect.stringMatching(message)})
    }
    withParams({n: 2 ** 15, r: 8, p: 1})
    await expect(readKeyFile(path, {passphrase: () => 'correct horse'})).resolves.toMatchObject({type: 'provider-main'})
  })
})
