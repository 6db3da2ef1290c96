import {randomInt} from 'node:crypto'
import {readFileSync} from 'node:fs'

import type {ApiClient} from '../core/api/client.js'
import type {JobDetail} from '../core/api/job-schemas.js'
import type {JobKind} from '../core/api/job-kinds.js'
import {createJob, getJobOutput, uploadProgram, type NewJob} from '../core/api/renter-jobs.js'
import {UserError} from '../core/errors.js'
import {templatePath} from '../core/templates.js'
import {multiplierExample} from '../executors/snarkjs/program.js'

/** The devnet renter's side of PROTOCOL §12: build a job's program and input, upload the program, open the job. */

export const JOB_EXAMPLES = ['multiplier', 'ghz'] as const
export type JobExample = (typeof JOB_EXAMPLES)[number]

const EXAMPLE_KINDS: Readonly<Record<JobExample, JobKind>> = {multiplier: 'zk_proof', ghz: 'quantum_circuit'}

export interface JobRequest {
  kind?: JobKind
  example?: JobExample
  /** A file holding the program bytes (for any kind). */
  programFile?: string
  /** A file holding the input bytes. */
  inputFile?: string
  /** container: the image and command, instead of a program file. */
  image?: string
  command?: string[]
  /** quantum_circuit without an input file: the shots (a random seed is drawn). */
  shots: number
  /** Fixed, or the most the renter pays in a sealed-bid auction (§13). */
  reward: NewJob['reward']
  collateral: string
  deadlineSeconds: number
  leaseSeconds: number
  maxAttempts: number
  resources: {cpu_cores: number; memory_mb: number; gpu_count: number; gpu_model?: string}
  requiresAttestation: boolean
  expectPublicSignals?: string[]
  /** An auction's two phases. */
  auctionPhases?: {bidSeconds: number; revealSeconds: number}
}

function readInputFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path)
  } catch (error) {
    throw new UserError(`${what} ${path} can't be read: ${(error as Error).message}`, {code: 'file_unreadable', suggestion: 'check the path and its permissions'})
  }
}

/** The kind, program and input a request names; a missing piece is a UserError saying which flag gives it. */
export function jobPayload(request: JobRequest): {kind: JobKind; program: Buffer; input: Buffer} {
  const kind = request.kind ?? (request.example ? EXAMPLE_KINDS[request.example] : undefined)
  if (!kind) throw new UserError('which kind of job?', {code: 'usage', exit: 2, suggestion: 'pass --kind zk_proof|quantum_circuit|container, or --example multiplier|ghz'})
  if (request.example && EXAMPLE_KINDS[request.example] !== kind) {
    throw new UserError(`the ${request.example} example is a ${EXAMPLE_KINDS[request.example]} job, not ${kind}`, {code: 'usage', exit: 2, suggestion: `drop --kind or pass --kind ${EXAMPLE_KINDS[request.example]}`})
  }
  const example = request.example === 'multiplier' ? multiplierExample() : undefined
  let program: Buffer | undefined
  if (request.programFile) program = readInputFile(request.programFile, 'the program file')
  else if (example) program = example.program
  else if (request.example === 'ghz') program = readFileSync(templatePath('jobs/ghz/ghz.qasm'))
  else if (kind === 'container' && request.image) program = Buffer.from(JSON.stringify({image: request.image, command: request.command ?? []}))
  if (!program) {
    const how = kind === 'container' ? '--image IMAGE --command \'["sh", "-c", "..."]\', or --program FILE' : kind === 'zk_proof' ? '--example multiplier, or --program FILE' : '--example ghz, or --program FILE'
    throw new UserError(`a ${kind} job needs a program`, {code: 'usage', exit: 2, suggestion: `pass ${how}`})
  }
  let input: Buffer | undefined
  if (request.inputFile) input = readInputFile(request.inputFile, 'the input file')
  else if (example) input = example.input
  else if (kind === 'quantum_circuit') input = Buffer.from(JSON.stringify({shots: request.shots, seed: randomInt(2 ** 31)}))
  else if (kind === 'container') input = Buffer.alloc(0)
  if (!input) throw new UserError('a zk_proof job needs its input signals', {code: 'usage', exit: 2, suggestion: 'pass --input FILE (JSON of the circuit\'s input signals)'})
  return {kind, program, input}
}

/** Uploads the program (idempotent by digest) and opens the job, signed by the renter key. */
export async function submitJob(client: ApiClient, request: JobRequest): Promise<JobDetail> {
  const {kind, program, input} = jobPayload(request)
  const {digest} = await uploadProgram(client, program)
  const job: NewJob = {
    kind,
    program_digest: digest,
    input_b64: input.toString('base64'),
    resources: request.resources,
    reward: request.reward,
    collateral: request.collateral,
    deadline_seconds: request.deadlineSeconds,
    lease_seconds: request.leaseSeconds,
    max_attempts: request.maxAttempts,
    ...(request.requiresAttestation ? {requires_attestation: true} : {}),
    ...(request.expectPublicSignals ? {expect_public_signals: request.expectPublicSignals} : {}),
    ...(request.reward.mode === 'auction' && request.auctionPhases
      ? {bid_seconds: request.auctionPhases.bidSeconds, reveal_seconds: request.auctionPhases.revealSeconds}
      : {}),
  }
  return createJob(client, job)
}

/** The settled result's output bytes, for `devnet job show --output`. */
export function jobOutput(client: ApiClient, jobId: string): Promise<Buffer> {
  return getJobOutput(client, jobId)
}
