import {ExecutorError} from '../executor.js'

/**
 * What the simulator needs to know of an OpenQASM 2.0 circuit before it runs it, read statement by statement:
 * registers, the measurements, the gate count and depth, and the circuit without its measurements (which the
 * library would sample with Math.random; the executor samples the final state itself, seeded).
 */
export interface CircuitShape {
  /** Qubits of all qregs, in declaration order: the first qreg's q[0] is qubit 0. */
  qubits: number
  /** Classical bits of all cregs, in declaration order. */
  clbits: number
  /** Gate applications after register broadcast (barriers and measurements not counted). */
  gates: number
  /** The longest chain of gates on any qubit. */
  depth: number
  /** For each classical bit written by a measurement, the qubit it holds (the last measurement into it wins). */
  measurements: Map<number, number>
  /** The circuit without its measure statements, for the library. */
  unitary: string
}

/** Parameters and qubits of the builtins and of qelib1.inc's gates (OpenQASM 2.0, appendix); others are checked by the library. */
const KNOWN_GATES = new Map<string, [params: number, qubits: number]>([
  ['U', [3, 1]], ['CX', [0, 2]], ['u3', [3, 1]], ['u2', [2, 1]], ['u1', [1, 1]], ['u0', [1, 1]], ['cx', [0, 2]], ['id', [0, 1]],
  ['x', [0, 1]], ['y', [0, 1]], ['z', [0, 1]], ['h', [0, 1]], ['s', [0, 1]], ['sdg', [0, 1]], ['t', [0, 1]], ['tdg', [0, 1]],
  ['rx', [1, 1]], ['ry', [1, 1]], ['rz', [1, 1]], ['cz', [0, 2]], ['cy', [0, 2]], ['ch', [0, 2]], ['ccx', [0, 3]],
  ['crz', [1, 2]], ['cu1', [1, 2]], ['cu3', [3, 2]],
])

/** Each distinct outcome is a string of this many bits at most, so the counts stay small. */
const MAX_CLBITS = 128

interface Register {
  offset: number
  size: number
}

/** A circuit that no provider could run: a syntax or reference error. */
function invalid(message: string): ExecutorError {
  return new ExecutorError('bad_program', `the circuit is not valid OpenQASM 2.0: ${message}`, {retryable: false})
}

/** A valid circuit this simulator doesn't run: another provider (a fuller simulator, a QPU) may. */
function unsupported(message: string): ExecutorError {
  return new ExecutorError('unsupported', message, {retryable: true})
}

/** Splits the source into statements: `;`-terminated, or a gate definition ending with its `}`. Comments removed. */
export function statements(source: string): string[] {
  const text = source.replaceAll(/\/\/[^\n]*/g, '')
  const found: string[] = []
  let current = ''
  for (let index = 0; index < text.length; index++) {
    const char = text[index] as string
    if (char === ';') {
      found.push(current.trim())
      current = ''
    } else if (char === '{') {
      const close = text.indexOf('}', index)
      if (close < 0) throw invalid('a gate body has no closing }')
      found.push(`${current.trim()} ${text.slice(index, close + 1)}`)
      current = ''
      index = close
    } else {
      current += char
    }
  }
  if (current.trim() !== '') throw invalid(`the last statement has no ; ("${current.trim().slice(0, 40)}")`)
  return found.filter((statement) => statement !== '').map((statement) => statement.replaceAll(/\s+/g, ' '))
}

/** `name(params) args` → the name, how many parameters, and the argument list (parameters may nest parentheses). */
function splitApplication(statement: string): {name: string; params: number; args: string} {
  const match = /^([A-Za-z][A-Za-z0-9_]*)\s*/.exec(statement)
  if (!match?.[1]) throw invalid(`cannot read "${statement.slice(0, 40)}"`)
  let rest = statement.slice(match[0].length)
  let params = 0
  if (rest.startsWith('(')) {
    let depth = 0
    let end = -1
    for (let index = 0; index < rest.length; index++) {
      if (rest[index] === '(') depth++
      else if (rest[index] === ')' && --depth === 0) {
        end = index
        break
      }
    }
    if (end < 0) throw invalid(`unbalanced parentheses in "${statement.slice(0, 40)}"`)
    params = topLevelCommas(rest.slice(1, end)) + (rest.slice(1, end).trim() === '' ? 0 : 1)
    rest = rest.slice(end + 1)
  }
  return {name: match[1], params, args: rest.trim()}
}

function topLevelCommas(text: string): number {
  let depth = 0
  let commas = 0
  for (const char of text) {
    if (char === '(') depth++
    else if (char === ')') depth--
    else if (char === ',' && depth === 0) commas++
  }
  return commas
}

/** Reads circuits for a state-vector simulator: terminal measurements only, no reset, no classical control. */
export function analyzeCircuit(source: string, options: {maxWidth: number; maxGates: number}): CircuitShape {
  const all = statements(source)
  const version = all[0]
  if (!version || !/^OPENQASM 2(\.\d+)?$/.test(version)) throw invalid('it must start with "OPENQASM 2.0;"')
  const qregs = new Map<string, Register>()
  const cregs = new Map<string, Register>()
  let qubits = 0
  let clbits = 0
  let gates = 0
  const level: number[] = []
  const measurements = new Map<number, number>()
  const measuredQubits = new Set<number>()
  const gateTable = new Map(KNOWN_GATES)
  const kept: string[] = [`${version};`]

  /** `r` (the whole register) or `r[i]` → the indices it names. */
  const operand = (text: string, registers: Map<string, Register>, kind: string): number[] => {
    const match = /^([A-Za-z][A-Za-z0-9_]*)\s*(?:\[\s*(\d+)\s*\])?$/.exec(text.trim())
    const register = match?.[1] ? registers.get(match[1]) : undefined
    if (!match || !register) throw invalid(`"${text.trim()}" is not a declared ${kind}`)
    if (match[2] === undefined) return Array.from({length: register.size}, (_, index) => register.offset + index)
    const index = Number(match[2])
    if (index >= register.size) throw invalid(`${text.trim()} is outside ${match[1]}[${register.size}]`)
    return [register.offset + index]
  }
  /** Register arguments apply the statement once per element; single bits repeat. Sizes must agree (QASM 2.0 §3). */
  const broadcast = (lists: number[][]): number[][] => {
    const size = Math.max(...lists.map((list) => (list.length > 1 ? list.length : 1)))
    if (lists.some((list) => list.length !== 1 && list.length !== size)) throw invalid('registers of different sizes in one statement')
    return Array.from({length: size}, (_, index) => lists.map((list) => (list.length === 1 ? (list[0] as number) : (list[index] as number))))
  }

  for (const statement of all.slice(1)) {
    const keyword = /^[A-Za-z]+/.exec(statement)?.[0] ?? ''
    if (keyword === 'include') {
      if (!/^include "qelib1\.inc"$/.test(statement)) throw unsupported(`only "qelib1.inc" can be included (${statement})`)
      kept.push(`${statement};`)
    } else if (keyword === 'qreg' || keyword === 'creg') {
      const match = /^[qc]reg ([A-Za-z][A-Za-z0-9_]*)\s*\[\s*(\d+)\s*\]$/.exec(statement)
      if (!match?.[1] || !match[2]) throw invalid(`cannot read "${statement}"`)
      const size = Number(match[2])
      const registers = keyword === 'qreg' ? qregs : cregs
      if (qregs.has(match[1]) || cregs.has(match[1])) throw invalid(`register ${match[1]} is declared twice`)
      if (size === 0) throw invalid(`register ${match[1]} has no bits`)
      registers.set(match[1], {offset: keyword === 'qreg' ? qubits : clbits, size})
      if (keyword === 'qreg') {
        qubits += size
        if (qubits > options.maxWidth) throw unsupported(`the circuit is ${qubits}+ qubits wide; this simulator runs up to ${options.maxWidth}`)
      } else {
        clbits += size
        if (clbits > MAX_CLBITS) throw unsupported(`the circuit has ${clbits}+ classical bits; this simulator reports up to ${MAX_CLBITS}`)
      }
      kept.push(`${statement};`)
    } else if (keyword === 'gate') {
      const {name, params, args} = splitApplication(statement.slice('gate'.length).trim())
      gateTable.set(name, [params, args.slice(0, args.indexOf('{')).split(',').length])
      kept.push(statement)
    } else if (keyword === 'opaque') {
      throw unsupported(`opaque gates can't be simulated (${statement.slice(0, 40)})`)
    } else if (keyword === 'reset' || keyword === 'if') {
      throw unsupported(`"${keyword}" needs mid-circuit measurement, which this simulator does not run`)
    } else if (keyword === 'measure') {
      const match = /^measure (.+?)\s*->\s*(.+)$/.exec(statement)
      if (!match?.[1] || !match[2]) throw invalid(`cannot read "${statement}"`)
      for (const [qubit, clbit] of broadcast([operand(match[1], qregs, 'qubit or qreg'), operand(match[2], cregs, 'bit or creg')]) as [number, number][]) {
        measurements.set(clbit, qubit)
        measuredQubits.add(qubit)
      }
    } else {
      const {name, params, args} = splitApplication(statement)
      const operands = args.split(',').map((arg) => operand(arg, qregs, 'qubit or qreg'))
      if (name === 'barrier') {
        const targets = operands.flat()
        const top = Math.max(...targets.map((qubit) => level[qubit] ?? 0))
        for (const qubit of targets) level[qubit] = top
        kept.push(`${statement};`)
        continue
      }
      const known = gateTable.get(name)
      if (known && (known[0] !== params || known[1] !== operands.length)) {
        throw invalid(`${name} takes ${known[0]} parameter(s) and ${known[1]} qubit(s), not ${params} and ${operands.length}`)
      }
      for (const targets of broadcast(operands)) {
        if (new Set(targets).size !== targets.length) throw invalid(`${name} names one qubit twice`)
        const measured = targets.find((qubit) => measuredQubits.has(qubit))
        if (measured !== undefined) throw unsupported(`gate ${name} acts on qubit ${measured} after it was measured: this simulator runs terminal measurements only`)
        const top = Math.max(...targets.map((qubit) => level[qubit] ?? 0)) + 1
        for (const qubit of targets) level[qubit] = top
        gates++
      }
      if (gates > options.maxGates) throw unsupported(`the circuit has more than ${options.maxGates} gates`)
      kept.push(`${statement};`)
    }
  }
  if (qubits === 0) throw invalid('it declares no qreg')
  return {qubits, clbits, gates, depth: Math.max(0, ...level.filter((value) => value !== undefined)), measurements, unitary: kept.join('\n') + '\n'}
}
