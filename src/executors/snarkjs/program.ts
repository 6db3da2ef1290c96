import {readFileSync} from 'node:fs'
import {z} from 'zod'

import {templatePath} from '../../core/templates.js'
import {ExecutorError, parseJobBytes} from '../executor.js'

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64').min(1)

/** The verification key as `snarkjs zkey export verificationkey` writes it; the fields the executor checks. */
export const VerificationKey = z.looseObject({
  protocol: z.literal('groth16'),
  curve: z.literal('bn128'),
  nPublic: z.number().int().nonnegative(),
})

/** A `zk_proof` program (§12): a circom circuit's witness generator, its Groth16 proving key and verification key. */
export const Groth16Program = z.strictObject({
  format: z.literal('snarkjs-groth16-v1'),
  wasm_b64: base64,
  zkey_b64: base64,
  verification_key: VerificationKey,
})
export type Groth16Program = z.infer<typeof Groth16Program>

/** A circuit's input signals: names to numbers (as decimal strings or integers), or arrays of them. */
type SignalValue = string | number | SignalValue[]
const SignalValue: z.ZodType<SignalValue> = z.union([z.string().regex(/^-?\d+$|^0x[0-9a-fA-F]+$/, 'expected an integer'), z.number().int(), z.array(z.lazy(() => SignalValue))])
export const CircuitInput = z.record(z.string(), SignalValue)

export interface DecodedProgram {
  wasm: Buffer
  zkey: Buffer
  verificationKey: Record<string, unknown>
  header: ZkeyHeader
}

/** The BN254 (bn128) base field modulus: the only curve the `snarkjs-groth16-v1` format uses. */
const BN254_Q = 21888242871839275222246405745257275088696311157297823662689037894645226208583n
const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d])

export function decodeProgram(bytes: Buffer): DecodedProgram {
  const program = parseJobBytes(Groth16Program, bytes, 'program')
  const wasm = Buffer.from(program.wasm_b64, 'base64')
  const zkey = Buffer.from(program.zkey_b64, 'base64')
  if (!wasm.subarray(0, 4).equals(WASM_MAGIC)) throw new ExecutorError('bad_program', 'the program\'s wasm_b64 is not a WebAssembly module', {retryable: false})
  const header = readZkeyHeader(zkey)
  if (header.nPublic !== program.verification_key.nPublic) {
    throw new ExecutorError('bad_program', `the proving key has ${header.nPublic} public signals and the verification key ${program.verification_key.nPublic}`, {retryable: false})
  }
  return {wasm, zkey, verificationKey: program.verification_key, header}
}

/** The sizes in a Groth16 zkey's header that decide the proving work. */
export interface ZkeyHeader {
  nVars: number
  nPublic: number
  domainSize: number
}

const ZKEY_HEADER_SECTION = 1
const GROTH16_HEADER_SECTION = 2
const GROTH16 = 1

/**
 * Reads the header of a zkey file (snarkjs's binary format: "zkey", version, sections of type u32 and size u64,
 * little-endian). Section 1 names the protocol; section 2 holds the field sizes and moduli, nVars, nPublic and the
 * FFT domain size.
 */
export function readZkeyHeader(zkey: Buffer): ZkeyHeader {
  const invalid = (why: string) => new ExecutorError('bad_program', `the program's zkey is not a Groth16 proving key: ${why}`, {retryable: false})
  if (zkey.length < 12 || zkey.toString('latin1', 0, 4) !== 'zkey') throw invalid('no zkey magic')
  const sectionCount = zkey.readUInt32LE(8)
  const sections = new Map<number, Buffer>()
  let offset = 12
  for (let index = 0; index < sectionCount; index++) {
    if (offset + 12 > zkey.length) throw invalid('truncated section table')
    const type = zkey.readUInt32LE(offset)
    const size = Number(zkey.readBigUInt64LE(offset + 4))
    offset += 12
    if (offset + size > zkey.length) throw invalid(`section ${type} runs past the end`)
    if (!sections.has(type)) sections.set(type, zkey.subarray(offset, offset + size))
    offset += size
  }
  const protocol = sections.get(ZKEY_HEADER_SECTION)
  if (!protocol || protocol.length < 4) throw invalid('no header section')
  if (protocol.readUInt32LE(0) !== GROTH16) throw invalid(`protocol ${protocol.readUInt32LE(0)} is not Groth16`)
  const header = sections.get(GROTH16_HEADER_SECTION)
  if (!header || header.length < 4) throw invalid('no Groth16 header')
  try {
    const n8q = header.readUInt32LE(0)
    const q = littleEndianBigInt(header.subarray(4, 4 + n8q))
    if (q !== BN254_Q) throw invalid('its curve is not bn128')
    const n8r = header.readUInt32LE(4 + n8q)
    let at = 8 + n8q + n8r
    const nVars = header.readUInt32LE(at)
    const nPublic = header.readUInt32LE((at += 4))
    const domainSize = header.readUInt32LE((at += 4))
    if (nVars === 0 || domainSize === 0 || (domainSize & (domainSize - 1)) !== 0) throw invalid(`nVars ${nVars}, domain size ${domainSize}`)
    return {nVars, nPublic, domainSize}
  } catch (error) {
    if (error instanceof ExecutorError) throw error
    throw invalid('truncated Groth16 header')
  }
}

function littleEndianBigInt(bytes: Buffer): bigint {
  let value = 0n
  for (let index = bytes.length - 1; index >= 0; index--) value = (value << 8n) | BigInt(bytes[index] ?? 0)
  return value
}

/**
 * The proving work of a circuit in G1-equivalent scalar multiplications, the unit of the snarkjs speed model. A
 * Groth16 proof is five multi-exponentiations: A, B and C over the witness in G1 (about nVars points each), B again
 * in G2 (an Fp2 point costs about three G1 points), and H over the FFT domain, plus six FFTs over the domain (about a
 * quarter of an MSM of the same size): 6 × nVars + 1.25 × domainSize.
 */
export function provingWork(header: ZkeyHeader): number {
  return 6 * header.nVars + 1.25 * header.domainSize
}

/** The built-in zk example (templates/jobs/multiplier/), as a `snarkjs-groth16-v1` program and its input. */
export function multiplierExample(): {program: Buffer; input: Buffer} {
  const file = (name: string) => readFileSync(templatePath(`jobs/multiplier/${name}`))
  const program: Groth16Program = {
    format: 'snarkjs-groth16-v1',
    wasm_b64: file('multiplier.wasm').toString('base64'),
    zkey_b64: file('multiplier.zkey').toString('base64'),
    verification_key: VerificationKey.parse(JSON.parse(file('verification_key.json').toString('utf8'))),
  }
  return {program: Buffer.from(JSON.stringify(program)), input: file('input.json')}
}
