import ed2curve from 'ed2curve'
import nacl from 'tweetnacl'

import {UserError} from './errors.js'
import {keyPairFromSeed} from './signing.js'

/**
 * PROTOCOL §7: credentials for a renter are sealed to the renter's Ed25519 key, converted to X25519:
 * base64(ephemeral_x25519_pk(32) ‖ nonce(24) ‖ nacl.box(JSON, nonce, renter_x25519_pk, ephemeral_sk)).
 */
export function sealCredentials(credentials: unknown, renterEd25519PublicKey: Uint8Array): string {
  const renterX25519 = ed2curve.convertPublicKey(renterEd25519PublicKey)
  if (!renterX25519) throw new UserError('the renter public key is not a valid Ed25519 point', {code: 'invalid_renter_key'})
  const ephemeral = nacl.box.keyPair()
  const nonce = nacl.randomBytes(nacl.box.nonceLength)
  const plaintext = new TextEncoder().encode(JSON.stringify(credentials))
  const box = nacl.box(plaintext, nonce, renterX25519, ephemeral.secretKey)
  const sealed = new Uint8Array(32 + 24 + box.length)
  sealed.set(ephemeral.publicKey, 0)
  sealed.set(nonce, 32)
  sealed.set(box, 56)
  return Buffer.from(sealed).toString('base64')
}

/** Opens sealed credentials with the renter's Ed25519 seed. */
export function openSealedCredentials(sealed: string, renterSeed: Uint8Array): unknown {
  const bytes = new Uint8Array(Buffer.from(sealed, 'base64'))
  if (bytes.length < 32 + 24 + nacl.box.overheadLength) {
    throw new UserError('sealed credentials are too short to be a sealed box', {code: 'invalid_sealed_credentials'})
  }
  const {publicKey} = keyPairFromSeed(renterSeed)
  const naclSecret = new Uint8Array(64)
  naclSecret.set(renterSeed, 0)
  naclSecret.set(publicKey, 32)
  const renterX25519Secret = ed2curve.convertSecretKey(naclSecret)
  const opened = nacl.box.open(bytes.subarray(56), bytes.subarray(32, 56), bytes.subarray(0, 32), renterX25519Secret)
  if (!opened) {
    throw new UserError('the sealed credentials do not open with this key', {
      code: 'seal_mismatch',
      suggestion: 'use the renter key the contract was created with',
    })
  }
  return JSON.parse(new TextDecoder().decode(opened)) as unknown
}
