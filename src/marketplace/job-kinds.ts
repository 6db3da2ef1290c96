import {z} from 'zod'

import type {JobKind} from './job-schemas.js'

/**
 * What the marketplace reads in each kind's program, input and output (PROTOCOL §12 table), and the checks it can
 * make without running anything: the output's shape, and, for traps, the known answer.
 */

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64').min(1)

export const ZkProgram = z.object({
  format: z.literal('snarkjs-groth16-v1'),
  wasm_b64: base64,
  zkey_b64: base64,
  verification_key: z.looseObject({
    protocol: z.literal('groth16'),
    curve: z.literal('bn128'),
    nPublic: z.number().int().nonnegative(),
  }),
})
export type ZkProgram = z.infer<typeof ZkProgram>

export const ZkInput = z.record(z.string(), z.unknown())

const fieldElement = z.string().regex(/^\d{1,100}$/)
const g1 = z.array(fieldElement).length(3)
export const ZkOutput = z.object({
  proof: z.looseObject({
    pi_a: g1,
    pi_b: z.array(z.array(fieldElement).length(2)).length(3),
    pi_c: g1,
    protocol: z.literal('groth16').optional(),
    curve: z.literal('bn128').optional(),
  }),
  public_signals: z.array(fieldElement),
})

export const ContainerProgram = z.object({
  image: z.string().min(1).max(512),
  command: z.array(z.string().max(65_536)).min(1).max(1024),
})
export type ContainerProgram = z.infer<typeof ContainerProgram>

/** At most this many shots per job: counts are JSON integers the marketplace sums. */
export const MAX_SHOTS = 1_000_000
/** Wider circuits are refused: a state-vector simulation of more qubits is out of reach, and bitstrings get long. */
export const MAX_QUBITS = 64

export const QuantumInput = z.strictObject({
  shots: z.number().int().min(1).max(MAX_SHOTS),
  seed: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
})
export type QuantumInput = z.infer<typeof QuantumInput>

export const QuantumOutput = z.object({counts: z.record(z.string(), z.number().int().nonnegative())})

export interface QasmShape {
  /** Total qubits over every `qreg`. */
  qubits: number
  /** Total classical bits over every `creg` (0 when there is none). */
  clbits: number
}

/** Reads the register widths of an OpenQASM 2.0 program (comments removed first); undefined when it isn't one. */
export function qasmShape(text: string): QasmShape | undefined {
  const code = text.replaceAll(/\/\/[^\n]*/g, '')
  if (!/^\s*OPENQASM\s+2\.0\s*;/.test(code)) return undefined
  let qubits = 0
  let clbits = 0
  for (const match of code.matchAll(/\b(qreg|creg)\s+[A-Za-z_]\w*\s*\[\s*(\d+)\s*\]\s*;/g)) {
    if (match[1] === 'qreg') qubits += Number(match[2])
    else clbits += Number(match[2])
  }
  if (qubits === 0 || qubits > MAX_QUBITS || clbits > MAX_QUBITS) return undefined
  return {qubits, clbits}
}

export type ParsedProgram =
  | {kind: 'zk_proof'; program: ZkProgram}
  | {kind: 'quantum_circuit'; shape: QasmShape}
  | {kind: 'container'; program: ContainerProgram}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown
  } catch {
    return undefined
  }
}

/** The program read as its kind's format, or a message saying what it isn't. */
export function parseProgram(kind: JobKind, bytes: Uint8Array): ParsedProgram | {error: string} {
  switch (kind) {
    case 'zk_proof': {
      const parsed = ZkProgram.safeParse(parseJson(bytes))
      return parsed.success ? {kind, program: parsed.data} : {error: 'not a snarkjs-groth16-v1 program: JSON {format, wasm_b64, zkey_b64, verification_key (groth16, bn128)}'}
    }
    case 'quantum_circuit': {
      const shape = qasmShape(Buffer.from(bytes).toString('utf8'))
      return shape ? {kind, shape} : {error: `not an OpenQASM 2.0 program with 1 to ${MAX_QUBITS} qubits in qreg declarations`}
    }
    case 'container': {
      const parsed = ContainerProgram.safeParse(parseJson(bytes))
      return parsed.success ? {kind, program: parsed.data} : {error: 'not a container program: JSON {image, command: [...]}'}
    }
  }
}

/** The input read as its kind expects, or a message; a container's input is any bytes. */
export function checkInput(kind: JobKind, bytes: Uint8Array): {error: string} | undefined {
  if (kind === 'zk_proof' && !ZkInput.safeParse(parseJson(bytes)).success) return {error: 'a zk_proof input is a JSON object of the circuit\'s input signals'}
  if (kind === 'quantum_circuit' && !QuantumInput.safeParse(parseJson(bytes)).success) {
    return {error: `a quantum_circuit input is JSON {shots: 1 to ${MAX_SHOTS}, seed: a non-negative integer}`}
  }
  return undefined
}

export function parseZkOutput(bytes: Uint8Array): z.infer<typeof ZkOutput> | undefined {
  const parsed = ZkOutput.safeParse(parseJson(bytes))
  return parsed.success ? parsed.data : undefined
}

export function parseQuantumInput(bytes: Uint8Array): QuantumInput | undefined {
  const parsed = QuantumInput.safeParse(parseJson(bytes))
  return parsed.success ? parsed.data : undefined
}

/**
 * §12 `quantum_circuit` shape: every bitstring of one width (the circuit's qubits, or its classical bits when it
 * declares a different number), made of 0 and 1, and the counts summing to the shots. Returns the counts, or undefined.
 */
export function quantumCounts(bytes: Uint8Array, shape: QasmShape, shots: number): Map<string, number> | undefined {
  const parsed = QuantumOutput.safeParse(parseJson(bytes))
  if (!parsed.success) return undefined
  const widths = new Set([shape.qubits, ...(shape.clbits > 0 ? [shape.clbits] : [])])
  const entries = Object.entries(parsed.data.counts)
  const width = entries[0]?.[0].length
  if (width === undefined || !widths.has(width)) return undefined
  let total = 0
  for (const [bits, count] of entries) {
    if (bits.length !== width || !/^[01]+$/.test(bits)) return undefined
    total += count
  }
  return total === shots ? new Map(entries) : undefined
}

/**
 * A GHZ trap's bound: each of the two outcomes is Binomial(shots, 1/2), so its count is within 5 standard deviations
 * (5·sqrt(shots/4)) of shots/2; an honest simulator lands outside with probability below 6·10⁻⁷.
 */
export function ghzWithinBound(count: number, shots: number): boolean {
  return Math.abs(count - shots / 2) <= 5 * Math.sqrt(shots / 4)
}

/** The known answer of a trap, kept with the job and never sent. */
export type TrapAnswer =
  | {kind: 'zk_proof'; public_signals: string[]}
  | {kind: 'quantum_circuit'; distribution: 'basis'; bitstring: string}
  | {kind: 'quantum_circuit'; distribution: 'ghz'; width: number}
  | {kind: 'container'; output_digest: string}

/** Whether quantum counts (already of the right shape) match a trap's known distribution. */
export function quantumTrapPasses(counts: ReadonlyMap<string, number>, answer: Extract<TrapAnswer, {kind: 'quantum_circuit'}>, shots: number): boolean {
  const observed = [...counts].filter(([, count]) => count > 0)
  if (answer.distribution === 'basis') return observed.length === 1 && observed[0]?.[0] === answer.bitstring && observed[0][1] === shots
  const zeros = '0'.repeat(answer.width)
  const ones = '1'.repeat(answer.width)
  if (observed.some(([bits]) => bits !== zeros && bits !== ones)) return false
  return ghzWithinBound(counts.get(zeros) ?? 0, shots) && ghzWithinBound(counts.get(ones) ?? 0, shots)
}
