import {randomBytes, scryptSync} from 'node:crypto'
import {copyFileSync, existsSync, readFileSync, statSync} from 'node:fs'
import {createRequire} from 'node:module'
import {z} from 'zod'

import {ExitCode, UserError} from './errors.js'
import {backupPath, writeFileAtomic} from './files.js'
import {fromHex, toHex} from './hex.js'
import {fingerprint, generateKeyPair, keyPairFromSeed, type KeyPair} from './signing.js'

export const KEY_TYPES = ['agent', 'provider-main', 'renter'] as const
export type KeyType = (typeof KEY_TYPES)[number]

const SCRYPT = {N: 2 ** 15, r: 8, p: 1} as const
/** The bytes secretbox adds to what it seals (Poly1305's tag). */
const SECRETBOX_OVERHEAD = 16

const require = createRequire(import.meta.url)
/** tweetnacl (~20 ms to load) only for a key file sealed with a passphrase: every command reads keys, few of them sealed. */
function secretbox(): typeof import('tweetnacl').secretbox {
  return (require('tweetnacl') as typeof import('tweetnacl')).secretbox
}

/**
 * What a key file's scrypt parameters may be. The minimum keeps a stolen file expensive to guess; the maximum keeps a
 * hostile file from making Outpost hang or exhaust memory (16 times the default's work, 256 MiB).
 */
export const SCRYPT_LIMITS = {minN: 2 ** 14, maxN: 2 ** 18, minR: 8, maxR: 32, minP: 1, maxP: 16, maxWork: 2 ** 22, maxMemory: 256 * 1024 * 1024} as const

/** The bytes scrypt allocates, as OpenSSL counts them against maxmem. */
function scryptMemory(params: {n: number; r: number; p: number}): number {
  return 128 * params.r * (params.n + params.p + 2)
}

const hex = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `expected ${bytes * 2} lowercase hex characters`)

const limits = SCRYPT_LIMITS
const EncryptedSeed = z
  .strictObject({
    kdf: z.literal('scrypt'),
    n: z
      .number()
      .int()
      .min(limits.minN, `expected scrypt cost n of at least ${limits.minN} (2^14): lower is too cheap to guess`)
      .max(limits.maxN, `expected scrypt cost n of at most ${limits.maxN} (2^18)`)
      .refine((n) => (n & (n - 1)) === 0, 'expected scrypt cost n to be a power of two'),
    r: z.number().int().min(limits.minR, `expected scrypt block size r of at least ${limits.minR}`).max(limits.maxR, `expected scrypt block size r of at most ${limits.maxR}`),
    p: z.number().int().min(limits.minP, `expected scrypt parallelism p of at least ${limits.minP}`).max(limits.maxP, `expected scrypt parallelism p of at most ${limits.maxP}`),
    salt: hex(16),
    nonce: hex(24),
    ciphertext: hex(32 + SECRETBOX_OVERHEAD),
  })
  .superRefine((params, context) => {
    if (params.n * params.r * params.p > limits.maxWork) {
      context.addIssue({code: 'custom', path: ['n'], message: `expected scrypt work n·r·p of at most ${limits.maxWork} (2^22), got ${params.n * params.r * params.p}`})
    }
    if (128 * params.n * params.r > limits.maxMemory) {
      context.addIssue({code: 'custom', path: ['r'], message: `expected scrypt memory 128·n·r of at most 256 MiB, got ${(128 * params.n * params.r) / 2 ** 20} MiB`})
    }
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
  return new Uint8Array(scryptSync(passphrase, salt, 32, {N: params.n, r: params.r, p: params.p, maxmem: scryptMemory(params)}))
}

export function encodeKeyFile(key: StoredKey, passphrase?: string): KeyFileContent {
  const publicKey = toHex(key.publicKey)
  if (passphrase === undefined) return {type: key.type, public_key: publicKey, secret_key: toHex(key.seed)}
  const salt = new Uint8Array(randomBytes(16))
  const nonce = new Uint8Array(randomBytes(24))
  const params = {n: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p}
  const ciphertext = secretbox()(key.seed, nonce, deriveKey(passphrase, salt, params))
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

/** What to do about a key file that can't be read: never a step that would replace another key (init --force). */
function brokenKeyRemedy(path: string, options: KeyTypeOptions): string {
  if (options.mainKey) return 'point --main-key-file at the key made by `outpost init --main-key` (a JSON file), or restore that file from a backup'
  return `restore it from its backup (${path}.bak-*) or your own; a lost agent key is replaced by \`outpost init --force\` and \`outpost register\``
}

export function readKeyFileContent(path: string, options: KeyTypeOptions = {}): KeyFileContent {
  const exit = options.mainKey ? ExitCode.usage : ExitCode.config
  if (!existsSync(path)) {
    throw new UserError(`no key file at ${path}`, {
      code: 'key_missing',
      exit,
      suggestion: options.mainKey ? 'check --main-key-file (or OUTPOST_MAIN_KEY_FILE): `outpost init --main-key` makes the key' : 'create one with `outpost init`, or point [agent] key_file at the right file',
    })
  }
  if (!statSync(path).isFile()) {
    throw new UserError(`${path} is not a file`, {code: 'key_missing', exit, suggestion: options.mainKey ? 'pass the key file itself to --main-key-file' : 'point [agent] key_file at the key file itself'})
  }
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    const code = typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : 'unreadable'
    throw new UserError(`cannot read the key file ${path} (${code})`, {code: 'key_unreadable', exit: ExitCode.config, suggestion: 'run outpost as the user that owns the key file'})
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    const what = /^\s*(-----BEGIN [A-Z ]*PRIVATE KEY-----|(ssh|ecdsa-sha2|sk)-[\w@.-]+ )/.test(text) ? 'an SSH key, not an Outpost key file' : 'not an Outpost key file (not JSON)'
    throw new UserError(`${path} is ${what}`, {code: 'key_invalid', exit: options.mainKey ? ExitCode.usage : ExitCode.config, suggestion: brokenKeyRemedy(path, options)})
  }
  const parsed = KeyFile.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new UserError(`key file ${path} is malformed: ${issue?.path.join('.') || 'file'}: ${issue?.message ?? 'invalid'}`, {
      code: 'key_invalid',
      exit: ExitCode.config,
      suggestion: brokenKeyRemedy(path, options),
    })
  }
  // Checked once the file is known to be a key: telling someone to chmod a file that holds no key helps nobody.
  const problem = keyFilePermissionProblem(path)
  if (problem) {
    throw new UserError(problem, {code: 'key_permissions', exit: ExitCode.config, suggestion: `run: chmod 600 ${path}`})
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
        exit: ExitCode.usage,
        suggestion: 'pass --passphrase-file, set OUTPOST_KEY_PASSPHRASE, or run in a terminal to be asked',
      })
    }
    const {encrypted} = content
    const derived = deriveKey(await options.passphrase(), fromHex(encrypted.salt, 16, 'salt'), encrypted)
    const opened = secretbox().open(fromHex(encrypted.ciphertext, 32 + SECRETBOX_OVERHEAD, 'ciphertext'), fromHex(encrypted.nonce, 24, 'nonce'), derived)
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
