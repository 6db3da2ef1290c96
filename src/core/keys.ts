import {randomBytes, scryptSync} from 'node:crypto'
import {copyFileSync, existsSync, readFileSync, statSync} from 'node:fs'
import nacl from 'tweetnacl'
import {z} from 'zod'

import {ExitCode, UserError} from './errors.js'
import {backupPath, writeFileAtomic} from './files.js'
import {fromHex, toHex} from './hex.js'
import {fingerprint, generateKeyPair, keyPairFromSeed, type KeyPair} from './signing.js'

export const KEY_TYPES = ['agent', 'provider-main', 'renter'] as const
export type KeyType = (typeof KEY_TYPES)[number]

const SCRYPT = {N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024} as const

const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes * 2} lowercase hex characters`)

const EncryptedSeed = z.strictObject({
  kdf: z.literal('scrypt'),
  n: z.number().int().positive(),
  r: z.number().int().positive(),
  p: z.number().int().positive(),
  salt: hex(16),
  nonce: hex(24),
  ciphertext: hex(32 + nacl.secretbox.overheadLength),
})

const KeyFile = z.union([
  z.strictObject({type: z.enum(KEY_TYPES), public_key: hex(32), secret_key: hex(32)}),
  z.strictObject({type: z.enum(KEY_TYPES), public_key: hex(32), encrypted: EncryptedSeed}),
])
export type KeyFileContent = z.infer<typeof KeyFile>

export interface StoredKey extends KeyPair {
  type: KeyType
}

function deriveKey(passphrase: string, salt: Uint8Array, params: {n: number; r: number; p: number}): Uint8Array {
  return new Uint8Array(scryptSync(passphrase, salt, 32, {N: params.n, r: params.r, p: params.p, maxmem: SCRYPT.maxmem}))
}

export function encodeKeyFile(key: StoredKey, passphrase?: string): KeyFileContent {
  const publicKey = toHex(key.publicKey)
  if (passphrase === undefined) return {type: key.type, public_key: publicKey, secret_key: toHex(key.seed)}
  const salt = new Uint8Array(randomBytes(16))
  const nonce = new Uint8Array(randomBytes(24))
  const params = {n: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p}
  const ciphertext = nacl.secretbox(key.seed, nonce, deriveKey(passphrase, salt, params))
  return {
    type: key.type,
    public_key: publicKey,
    encrypted: {kdf: 'scrypt', ...params, salt: toHex(salt), nonce: toHex(nonce), ciphertext: toHex(ciphertext)},
  }
}

/** Writes a key file atomically with mode 0600. */
export function writeKeyFile(path: string, key: StoredKey, passphrase?: string): void {
  writeFileAtomic(path, JSON.stringify(encodeKeyFile(key, passphrase), null, 2) + '\n', 0o600)
}

export function createKeyFile(path: string, type: KeyType, options: {passphrase?: string; force?: boolean} = {}): {key: StoredKey; backup?: string} {
  let backup: string | undefined
  if (existsSync(path)) {
    if (!options.force) {
      throw new UserError(`a key already exists at ${path}`, {
        code: 'key_exists',
        suggestion: 'keep it, or pass --force to replace it (the old key is kept as a timestamped backup)',
      })
    }
    backup = backupPath(path)
    copyFileSync(path, backup)
  }
  const key: StoredKey = {...generateKeyPair(), type}
  writeKeyFile(path, key, options.passphrase)
  return {key, backup}
}

export interface KeyTypeOptions {
  /** Refuse any key but the provider main key: an agent key must never stand in for it (PROTOCOL §3). */
  mainKey?: boolean
}

export interface ReadKeyOptions extends KeyTypeOptions {
  /** Called only when the file is encrypted. */
  passphrase?: () => string | Promise<string>
}

/** The permission problem of a key file, or undefined when only its owner can read it (as ssh insists). */
export function keyFilePermissionProblem(path: string): string | undefined {
  const mode = statSync(path).mode & 0o777
  if ((mode & 0o077) === 0) return undefined
  return `key file ${path} has mode ${mode.toString(8).padStart(4, '0')}: group or others can read it`
}

export function readKeyFileContent(path: string, options: KeyTypeOptions = {}): KeyFileContent {
  if (!existsSync(path)) {
    throw new UserError(`no key file at ${path}`, {
      code: 'key_missing',
      exit: ExitCode.config,
      suggestion: 'create one with `outpost init`, or point [agent] key_file at the right file',
    })
  }
  const problem = keyFilePermissionProblem(path)
  if (problem) {
    throw new UserError(problem, {code: 'key_permissions', exit: ExitCode.config, suggestion: `run: chmod 600 ${path}`})
  }
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'))
  } catch {
    throw new UserError(`key file ${path} is not valid JSON`, {
      code: 'key_invalid',
      exit: ExitCode.config,
      suggestion: 'restore it from a backup, or create a new key with `outpost init --force`',
    })
  }
  const parsed = KeyFile.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new UserError(`key file ${path} is malformed: ${issue?.path.join('.') || 'file'}: ${issue?.message ?? 'invalid'}`, {
      code: 'key_invalid',
      exit: ExitCode.config,
      suggestion: 'restore it from a backup, or create a new key with `outpost init --force`',
    })
  }
  if (options.mainKey && parsed.data.type !== 'provider-main') {
    throw new UserError(`${path} holds a ${parsed.data.type} key, not the provider main key`, {
      code: 'wrong_key_type',
      exit: ExitCode.usage,
      suggestion: 'point --main-key-file at the key made by `outpost init --main-key`',
    })
  }
  return parsed.data
}

export async function readKeyFile(path: string, options: ReadKeyOptions = {}): Promise<StoredKey> {
  const content = readKeyFileContent(path, options)
  let seed: Uint8Array
  if ('secret_key' in content) {
    seed = fromHex(content.secret_key, 32, 'secret_key')
  } else {
    if (!options.passphrase) {
      throw new UserError(`key file ${path} is encrypted and no passphrase was given`, {
        code: 'passphrase_required',
        exit: ExitCode.config,
        suggestion: 'pass --passphrase-file, set OUTPOST_KEY_PASSPHRASE, or run in a terminal to be asked',
      })
    }
    const {encrypted} = content
    const derived = deriveKey(await options.passphrase(), fromHex(encrypted.salt, 16, 'salt'), encrypted)
    const opened = nacl.secretbox.open(fromHex(encrypted.ciphertext, 48, 'ciphertext'), fromHex(encrypted.nonce, 24, 'nonce'), derived)
    if (!opened) {
      throw new UserError(`wrong passphrase for key file ${path}`, {code: 'wrong_passphrase', exit: ExitCode.config, suggestion: 'check the passphrase and try again'})
    }
    seed = opened
  }
  const pair = keyPairFromSeed(seed)
  if (toHex(pair.publicKey) !== content.public_key) {
    throw new UserError(`key file ${path}: public_key does not match the secret key`, {
      code: 'key_invalid',
      exit: ExitCode.config,
      suggestion: 'the file was edited or corrupted: restore it from a backup',
    })
  }
  return {...pair, type: content.type}
}

export function describeKey(publicKey: Uint8Array): {public_key: string; fingerprint: string} {
  return {public_key: toHex(publicKey), fingerprint: fingerprint(publicKey)}
}
