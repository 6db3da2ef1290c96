import {chmodSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import * as Parser from '@oclif/core/parser'
import {describe, expect, it} from 'vitest'

import {duration, lifetime, mainKeyFile, passphraseFile, sshPublicKey, sshPublicKeyProblem} from '../../src/cli/flags.js'
import {toHex} from '../../src/core/hex.js'
import {createKeyFile} from '../../src/core/keys.js'

const flags = {
  grace: duration({description: 'grace', default: '24h'}),
  wait: duration({description: 'wait'}),
  'expires-in': lifetime({description: 'lifetime'}),
  'main-key-file': mainKeyFile(),
  'passphrase-file': passphraseFile,
  'ssh-pubkey': sshPublicKey(),
}

async function parse(argv: string[]) {
  return (await Parser.parse(argv, {flags, strict: true})).flags
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'outpost-flags-'))
}

describe('flags that parse into values', () => {
  it('a duration is milliseconds, its default too; a lifetime may be never', async () => {
    expect(await parse([])).toMatchObject({grace: 86_400_000})
    const parsed = await parse(['--grace', '0', '--wait', '2w', '--expires-in', 'never'])
    expect(parsed).toMatchObject({grace: 0, wait: 1_209_600_000, 'expires-in': 'never'})
    expect((await parse(['--expires-in', '90d']))['expires-in']).toBe(90 * 86_400_000)
  })

  it('a bare number is refused as a usage error naming the flag', async () => {
    await expect(parse(['--wait', '30'])).rejects.toMatchObject({code: 'invalid_duration', exit: 2, message: expect.stringContaining('--wait: "30" is a number without a unit')})
    await expect(parse(['--expires-in', '90'])).rejects.toMatchObject({code: 'invalid_duration', exit: 2, message: expect.stringContaining('--expires-in: "90"')})
  })

  it('--main-key-file is a provider main key, with its public key read without the passphrase; any other key is refused', async () => {
    const dir = tempDir()
    const main = createKeyFile(join(dir, 'main.key'), 'provider-main', {passphrase: 'correct horse'})
    const parsed = await parse(['--main-key-file', join(dir, 'main.key')])
    expect(parsed['main-key-file']).toEqual({path: join(dir, 'main.key'), publicKey: toHex(main.key.publicKey), encrypted: true})

    createKeyFile(join(dir, 'agent.key'), 'agent')
    await expect(parse(['--main-key-file', join(dir, 'agent.key')])).rejects.toMatchObject({code: 'wrong_key_type', exit: 2})
  })

  it('--passphrase-file is read when a key needs it: a missing file fails only then', async () => {
    const dir = tempDir()
    const parsed = await parse(['--passphrase-file', join(dir, 'nowhere')])
    const read = parsed['passphrase-file']
    expect(read).toBeTypeOf('function')
    await expect(read?.()).rejects.toMatchObject({code: 'passphrase_file'})
    writeFileSync(join(dir, 'passphrase'), 'correct horse\n')
    chmodSync(join(dir, 'passphrase'), 0o600)
    expect(await (await parse(['--passphrase-file', join(dir, 'passphrase')]))['passphrase-file']?.()).toBe('correct horse')
  })

  it('--ssh-pubkey is one OpenSSH public key, given as text or as a file; the key data must name its type', async () => {
    const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVnhlMas7YyM1M0V1GV+JZL30egIhRBlaFjDuz1uUz4 renter@laptop'
    expect(sshPublicKeyProblem(key)).toBeUndefined()
    expect((await parse(['--ssh-pubkey', key]))['ssh-pubkey']).toBe(key)
    const dir = tempDir()
    writeFileSync(join(dir, 'id.pub'), `# a comment line\n${key}\n`)
    expect((await parse(['--ssh-pubkey', join(dir, 'id.pub')]))['ssh-pubkey']).toBe(key)
    // The blob says ssh-rsa, the line ssh-ed25519: a key pasted together from two.
    expect(sshPublicKeyProblem('ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 x')).toBe('the key data is not a ssh-ed25519 key')
    expect(sshPublicKeyProblem('ssh-ed25519 not base64!')).toBe('the key data is not a ssh-ed25519 key')
    expect(sshPublicKeyProblem('hello world')).toMatch(/^expected an OpenSSH public key/)
    writeFileSync(join(dir, 'two.pub'), `${key}\n${key}\n`)
    await expect(parse(['--ssh-pubkey', join(dir, 'two.pub')])).rejects.toMatchObject({code: 'invalid_ssh_key', exit: 2, message: expect.stringContaining('expected one public key, found 2 lines')})
  })
})
