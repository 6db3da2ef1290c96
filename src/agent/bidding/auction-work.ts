import {z} from 'zod'

import type {Job} from '../../core/api/job-schemas.js'
import {ExecutorError, parseJobBytes} from '../../executors/executor.js'
import {analyzeCircuit} from '../../executors/qasm/qasm.js'
import {decodeProgram} from '../../executors/snarkjs/program.js'
import type {WorkUnits} from './auction-pricing.js'

/** Readers of sizes only: the limits of what this host runs are the executor's business, not the price's. */
const NO_LIMIT = {maxWidth: Number.MAX_SAFE_INTEGER, maxGates: Number.MAX_SAFE_INTEGER}
const Shots = z.looseObject({shots: z.number().int().positive()})

/**
 * The work of a zk_proof or quantum_circuit job, read from its program (and input), in the units its kind is priced
 * in: constraints (the proving key's domain size, the constraint count rounded up to a power of two: the zkey header
 * has no exact count), or shots × width × depth. Container jobs are priced from their estimate (containerWork).
 * Throws an ExecutorError when the bytes can't be read: such a job is declined as unreadable.
 */
export function readWork(job: Job, program: Buffer, input: Buffer | undefined): WorkUnits {
  if (job.kind === 'zk_proof') {
    const {header} = decodeProgram(program)
    return {units: header.domainSize, describe: `${header.nVars} variables, domain ${header.domainSize}`}
  }
  if (job.kind === 'quantum_circuit') {
    const shape = analyzeCircuit(program.toString('utf8'), NO_LIMIT)
    if (!input) throw new ExecutorError('bad_input', 'the input (with the shots) was not read', {retryable: true})
    const {shots} = parseJobBytes(Shots, input, 'input')
    return {units: shots * shape.qubits * shape.depth, describe: `${shots} shots × width ${shape.qubits} × depth ${shape.depth}`}
  }
  throw new ExecutorError('unsupported', 'container jobs are priced from their estimated CPU-seconds', {retryable: true})
}
