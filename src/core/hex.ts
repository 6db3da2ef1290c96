import {UserError} from './errors.js'

const HEX = /^(?:[0-9a-f]{2})*$/

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/** Parses lowercase hex of an exact byte length; `what` names the value in the error. */
export function fromHex(hex: string, length: number, what: string): Uint8Array {
  if (hex.length !== length * 2 || !HEX.test(hex)) {
    throw new UserError(`${what}: expected ${length * 2} lowercase hex characters`, {code: 'invalid_hex'})
  }
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

export function isHex(value: string, length: number): boolean {
  return value.length === length * 2 && HEX.test(value)
}
