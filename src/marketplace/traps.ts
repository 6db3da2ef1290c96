import {randomBytes, randomInt} from 'node:crypto'

import {sha256Hex} from '../core/signing.js'
import {parseQuantumInput, type ParsedProgram, type TrapAnswer} from './job-kinds.js'
import type {JobKind} from './job-schemas.js'
import type {ZkWorker} from './zk-worker.js'

/**
 * §12 traps: known-answer jobs the devnet mixes into the renter-submitted stream. With a ratio r, every renter job of a
 * kind adds r to that kind's credit, and each time the credit passes 1 one trap is made from the job that tipped it
 * (so r = 0.1 gives exactly one trap per ten renter jobs of each kind; the credit starts at a random point, so which
 * job of the ten is not fixed). The trap copies that job's shape (resources, reward, collateral, times, attempts,
 * attestation, auction) and is created by the devnet as its own requester, so nothing in the job as an agent sees it
 * differs. Its program and input:
 * - zk_proof: the renter job's own program and input; the known answer is the public signals the devnet computes from
 *   the circuit's witness (no proving), and the proof must verify as for any job.
 * - quantum_circuit: a circuit of the same width written by the devnet, with the renter job's shots and a fresh seed:
 *   either a GHZ state (only all-zeros and all-ones, each within the binomial bound of `ghzWithinBound`) or a basis
 *   state (X on a palindromic set of qubits, so the answer is one bitstring for every shot whichever end a
 *   simulator writes qubit 0 at).
 * - container: the renter job's image running `sh -c 'tr a-f A-F < /input > /output'` on random hex: the output must
 *   be the input upper-cased (the image needs a shell and `tr`, as busybox, Debian and Alpine images have).
 */

export interface TrapPlan {
  program: Buffer
  input: Buffer
  answer: TrapAnswer
}

export const CONTAINER_TRAP_COMMAND = ['sh', '-c', 'tr a-f A-F < /input > /output']

export function ghzCircuit(width: number): string {
  const entangle = Array.from({length: width - 1}, (_, index) => `cx q[${index}],q[${index + 1}];`)
  return ['OPENQASM 2.0;', 'include "qelib1.inc";', `qreg q[${width}];`, `creg c[${width}];`, 'h q[0];', ...entangle, 'measure q -> c;', ''].join('\n')
}

/** A basis state with X on the set qubits; `bits[i]` is qubit i (the set is a palindrome, so order doesn't matter). */
export function basisCircuit(bits: readonly boolean[]): string {
  const flips = bits.flatMap((set, index) => (set ? [`x q[${index}];`] : []))
  return ['OPENQASM 2.0;', 'include "qelib1.inc";', `qreg q[${bits.length}];`, `creg c[${bits.length}];`, ...flips, 'measure q -> c;', ''].join('\n')
}

function palindromicBits(width: number): boolean[] {
  const bits = Array.from({length: width}, () => false)
  for (let index = 0; index < Math.ceil(width / 2); index++) {
    const set = randomInt(2) === 1
    bits[index] = set
    bits[width - 1 - index] = set
  }
  return bits
}

export class TrapMaker {
  private readonly credit = new Map<JobKind, number>()

  constructor(
    private readonly ratio: number,
    private readonly zk: ZkWorker,
  ) {}

  /** Whether this renter job tips its kind's credit over 1 (and takes the 1 when it does). */
  due(kind: JobKind): boolean {
    if (this.ratio <= 0) return false
    const credit = (this.credit.get(kind) ?? Math.random()) + this.ratio
    const due = credit >= 1
    this.credit.set(kind, due ? credit - 1 : credit)
    return due
  }

  /** The trap made from a renter job, or undefined when none can be (a zk input whose witness can't be computed). */
  async plan(program: ParsedProgram, programBytes: Buffer, input: Buffer): Promise<TrapPlan | undefined> {
    switch (program.kind) {
      case 'zk_proof': {
        const wasm = Buffer.from(program.program.wasm_b64, 'base64')
        const signals = await this.zk.publicSignals(wasm, JSON.parse(input.toString('utf8')), program.program.verification_key.nPublic).catch(() => undefined)
        return signals && {program: programBytes, input, answer: {kind: 'zk_proof', public_signals: signals}}
      }
      case 'quantum_circuit': {
        const shots = parseQuantumInput(input)?.shots
        if (shots === undefined) return undefined
        const width = program.shape.qubits
        const trapInput = Buffer.from(JSON.stringify({shots, seed: randomInt(2 ** 31)}))
        if (randomInt(2) === 0) return {program: Buffer.from(ghzCircuit(width)), input: trapInput, answer: {kind: 'quantum_circuit', distribution: 'ghz', width}}
        const bits = palindromicBits(width)
        const bitstring = bits.map((set) => (set ? '1' : '0')).join('')
        return {program: Buffer.from(basisCircuit(bits)), input: trapInput, answer: {kind: 'quantum_circuit', distribution: 'basis', bitstring}}
      }
      case 'container': {
        const text = randomBytes(Math.min(2048, Math.max(16, Math.ceil(input.length / 2)))).toString('hex')
        const trapProgram = Buffer.from(JSON.stringify({image: program.program.image, command: CONTAINER_TRAP_COMMAND}))
        return {program: trapProgram, input: Buffer.from(text), answer: {kind: 'container', output_digest: sha256Hex(text.toUpperCase())}}
      }
    }
  }
}
