import {createPublicKey, diffieHellman, generateKeyPairSync} from 'node:crypto'
import {createRequire} from 'node:module'

import {UserError} from './errors.js'
import {keyPairFromSeed} from './signing.js'

const require = createRequire(import.meta.url)
/** tweetnacl is loaded at the first seal: an agent that has handed over no machine yet holds none of it in memory. */
function nacl(): typeof import('tweetnacl') {
  return require('tweetnacl') as typeof import('tweetnacl')
}

const FIELD_PRIME = 2n ** 255n - 19n
const EDWARDS_D = (-121_665n * modularInverse(121_666n)) % FIELD_PRIME + FIELD_PRIME

function modularPower(base: bigint, exponent: bigint): bigint {
  let result = 1n
  let square = ((base % FIELD_PRIME) + FIELD_PRIME) % FIELD_PRIME
  for (let rest = exponent; rest > 0n; rest >>= 1n) {
    if (rest & 1n) result = (result * square) % FIELD_PRIME
    square = (square * square) % FIELD_PRIME
  }
  return result
}

function modularInverse(value: bigint): bigint {
  return modularPower(value, FIELD_PRIME - 2n)
}

function littleEndianToBigInt(bytes: Uint8Array): bigint {
  let value = 0n
  for (let index = bytes.length - 1; index >= 0; index--) value = (value << 8n) | BigInt(bytes[index] ?? 0)
  return value
}

function bigIntToLittleEndian(value: bigint): Uint8Array {
  const bytes = new Uint8Array(32)
  for (let index = 0, rest = value; index < 32; index++, rest >>= 8n) bytes[index] = Number(rest & 0xffn)
  return bytes
}

/**
 * The Montgomery u of an Ed25519 public key, u = (1 + y) / (1 − y), after checking that the key is a point on the
 * curve (as ed2curve does). BigInt arithmetic: ed2curve's pure-JS field code cost ~10 ms per sealed contract.
 */
function x25519FromEd25519(publicKey: Uint8Array): Uint8Array | undefined {
  const memoKey = Buffer.from(publicKey).toString('hex')
  if (convertedKeys.has(memoKey)) return convertedKeys.get(memoKey)
  const converted = convert(publicKey)
  // Bounded: a renter rents again and again, and the conversion is three 255-bit modular powers.
  if (convertedKeys.size >= MAX_CONVERTED_KEYS) convertedKeys.delete(convertedKeys.keys().next().value ?? '')
  convertedKeys.set(memoKey, converted)
  return converted
}

const MAX_CONVERTED_KEYS = 1024
const convertedKeys = new Map<string, Uint8Array | undefined>()

function convert(publicKey: Uint8Array): Uint8Array | undefined {
  if (publicKey.length !== 32) return undefined
  const y = littleEndianToBigInt(publicKey) & ((1n << 255n) - 1n)
  if (y >= FIELD_PRIME || y === 1n) return undefined
  const ySquared = (y * y) % FIELD_PRIME
  const xSquared = ((ySquared - 1n + FIELD_PRIME) * modularInverse((EDWARDS_D * ySquared + 1n) % FIELD_PRIME)) % FIELD_PRIME
  if (xSquared !== 0n && modularPower(xSquared, (FIELD_PRIME - 1n) / 2n) !== 1n) return undefined
  return bigIntToLittleEndian(((1n + y) * modularInverse((1n - y + FIELD_PRIME) % FIELD_PRIME)) % FIELD_PRIME)
}

/** tweetnacl's HSalsa20 core, which its published typings leave out. */
function hsalsa20(out: Uint8Array, input: Uint8Array, key: Uint8Array, constant: Uint8Array): void {
  const {lowlevel} = nacl() as unknown as {lowlevel: {crypto_core_hsalsa20: typeof hsalsa20}}
  lowlevel.crypto_core_hsalsa20(out, input, key, constant)
}
const SALSA_SIGMA = new TextEncoder().encode('expand 32-byte k')

/** nacl.box.before (X25519, then HSalsa20) with the X25519 step done by OpenSSL; undefined for a low-order key. */
function boxSharedKey(renterX25519: Uint8Array): {sharedKey: Uint8Array; ephemeralPublicKey: Uint8Array} | undefined {
  const ephemeral = generateKeyPairSync('x25519')
  const renterKey = createPublicKey({key: {kty: 'OKP', crv: 'X25519', x: Buffer.from(renterX25519).toString('base64url')}, format: 'jwk'})
  let shared: Buffer
  try {
    shared = diffieHellman({privateKey: ephemeral.privateKey, publicKey: renterKey})
  } catch {
    return undefined
  }
  const sharedKey = new Uint8Array(32)
  hsalsa20(sharedKey, new Uint8Array(16), shared, SALSA_SIGMA)
  const jwk = ephemeral.publicKey.export({format: 'jwk'})
  return {sharedKey, ephemeralPublicKey: new Uint8Array(Buffer.from(jwk.x ?? '', 'base64url'))}
}

/**
 * PROTOCOL §7: credentials for a renter are sealed to the renter's Ed25519 key, converted to X25519:
 * base64(ephemeral_x25519_pk(32) ‖ nonce(24) ‖ nacl.box(JSON, nonce, renter_x25519_pk, ephemeral_sk)).
 */
export function sealCredentials(credentials: unknown, renterEd25519PublicKey: Uint8Array): string {
  const renterX25519 = x25519FromEd25519(renterEd25519PublicKey)
  const shared = renterX25519 && boxSharedKey(renterX25519)
  if (!shared) throw new UserError('the renter public key is not a valid Ed25519 point', {code: 'invalid_renter_key'})
  const {box: naclBox, randomBytes, secretbox} = nacl()
  const nonce = randomBytes(naclBox.nonceLength)
  const plaintext = new TextEncoder().encode(JSON.stringify(credentials))
  const box = secretbox(plaintext, nonce, shared.sharedKey)
  const sealed = new Uint8Array(32 + 24 + box.length)
  sealed.set(shared.ephemeralPublicKey, 0)
  sealed.set(nonce, 32)
  sealed.set(box, 56)
  return Buffer.from(sealed).toString('base64')
}

/** Opens sealed credentials with the renter's Ed25519 seed. */
export function openSealedCredentials(sealed: string, renterSeed: Uint8Array): unknown {
  const bytes = new Uint8Array(Buffer.from(sealed, 'base64'))
  const {box} = nacl()
  if (bytes.length < 32 + 24 + box.overheadLength) {
    throw new UserError('sealed credentials are too short to be a sealed box', {code: 'invalid_sealed_credentials'})
  }
  const {publicKey} = keyPairFromSeed(renterSeed)
  const naclSecret = new Uint8Array(64)
  naclSecret.set(renterSeed, 0)
  naclSecret.set(publicKey, 32)
  const renterX25519Secret = (require('ed2curve') as typeof import('ed2curve')).convertSecretKey(naclSecret)
  const opened = box.open(bytes.subarray(56), bytes.subarray(32, 56), bytes.subarray(0, 32), renterX25519Secret)
  if (!opened) {
    throw new UserError('the sealed credentials do not open with this key', {
      code: 'seal_mismatch',
      suggestion: 'use the renter key the contract was created with',
    })
  }
  return JSON.parse(new TextDecoder().decode(opened)) as unknown
}
