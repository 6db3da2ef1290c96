import {readFileSync} from 'node:fs'
import {z} from 'zod'

import {writeFileAtomic} from '../core/files.js'
import type {ExecutorType} from '../core/config/jobs.js'
import type {RunEstimate} from './executor.js'

/**
 * A machine's speed for one executor: a run is expected to take `fixed_ms + ms_per_unit × units`, where units are
 * the executor's measure of a job's size (for snarkjs, G1-equivalent multiplications of the proof; for the QASM
 * simulator, amplitude updates). Fitted from runs that report the two parts separately.
 */
const MachineSpeed = z.object({
  fixed_ms: z.number().nonnegative(),
  ms_per_unit: z.number().nonnegative(),
  samples: z.number().int().positive(),
})

/** The measured wall time of one program on this machine (an exponentially weighted mean). */
const ProgramSpeed = z.object({
  ms: z.number().nonnegative(),
  samples: z.number().int().positive(),
  updated_at: z.number().int(),
})

const SpeedFile = z.object({
  version: z.literal(1),
  machine: z.record(z.string(), MachineSpeed),
  programs: z.record(z.string(), ProgramSpeed),
})
type SpeedFile = z.infer<typeof SpeedFile>

/** Weight of the newest run in the running means: recent runs count more (the machine's load changes). */
const NEWEST_WEIGHT = 0.3
/** Programs remembered; the least recently run are forgotten first. */
const MAX_PROGRAMS = 2000

export interface MachineSample {
  /** What a run costs whatever its size: starting the process or worker, loading libraries, verifying. */
  fixedMs: number
  /** The part that grows with the job. */
  variableMs: number
  units: number
}

/** What the speed book knows of one job before it runs. */
export interface SpeedQuery {
  type: ExecutorType
  programDigest: string
  /** The job's size in the executor's units, when the executor can tell it from the program (and input). */
  units?: number
  /** How the units read in a log line, like "1004 variables, domain 2048". */
  describeUnits?: string
}

function mean(previous: number, sample: number, samples: number): number {
  return samples === 0 ? sample : previous + NEWEST_WEIGHT * (sample - previous)
}

/**
 * The measured speeds the estimates come from, kept in a JSON file (in the agent's state directory) so a restart
 * keeps them. A run of a program seen before is estimated from its own past runs; a new program from the machine
 * model of its executor. The file is a cache: one that can't be read is started afresh.
 */
export class SpeedBook {
  private data: SpeedFile | undefined

  constructor(
    private readonly file?: string,
    private readonly now: () => number = Date.now,
  ) {}

  estimate(query: SpeedQuery): RunEstimate | undefined {
    const data = this.load()
    const program = data.programs[programKey(query.type, query.programDigest)]
    if (program) {
      return {seconds: program.ms / 1000, basis: `measured: ${program.samples} run${program.samples === 1 ? '' : 's'} of this program here`}
    }
    const machine = data.machine[query.type]
    if (!machine || query.units === undefined) return undefined
    const ms = machine.fixed_ms + machine.ms_per_unit * query.units
    return {
      seconds: ms / 1000,
      basis: `size model: ${query.describeUnits ?? `${query.units} units`}; ${Math.round(machine.fixed_ms)} ms fixed + ${(machine.ms_per_unit * 1e6).toFixed(1)} ms per million units (${machine.samples} run${machine.samples === 1 ? '' : 's'})`,
    }
  }

  /** Records a finished run: the program's wall time, and, when given, a sample of the machine model. */
  record(type: ExecutorType, programDigest: string, totalMs: number, machineSample?: MachineSample): void {
    const data = this.load()
    const key = programKey(type, programDigest)
    const program = data.programs[key]
    data.programs[key] = {ms: mean(program?.ms ?? 0, totalMs, program?.samples ?? 0), samples: (program?.samples ?? 0) + 1, updated_at: this.now()}
    if (machineSample && machineSample.units > 0) updateMachine(data, type, machineSample)
    this.forgetOldest(data)
    this.save(data)
  }

  /** Records a machine sample alone (a calibration run, whose program is not a job's). */
  recordCalibration(type: ExecutorType, sample: MachineSample): void {
    const data = this.load()
    updateMachine(data, type, sample)
    this.save(data)
  }

  private forgetOldest(data: SpeedFile): void {
    const keys = Object.keys(data.programs)
    if (keys.length <= MAX_PROGRAMS) return
    keys.sort((a, b) => (data.programs[a]?.updated_at ?? 0) - (data.programs[b]?.updated_at ?? 0))
    for (const key of keys.slice(0, keys.length - MAX_PROGRAMS)) delete data.programs[key]
  }

  private load(): SpeedFile {
    if (this.data) return this.data
    this.data = {version: 1, machine: {}, programs: {}}
    if (!this.file) return this.data
    try {
      const parsed = SpeedFile.safeParse(JSON.parse(readFileSync(this.file, 'utf8')))
      if (parsed.success) this.data = parsed.data
    } catch {
      // No file yet, or one that can't be read: measurements start again.
    }
    return this.data
  }

  private save(data: SpeedFile): void {
    if (this.file) writeFileAtomic(this.file, JSON.stringify(data, null, 1) + '\n')
  }
}

function updateMachine(data: SpeedFile, type: ExecutorType, sample: MachineSample): void {
  const machine = data.machine[type]
  const samples = machine?.samples ?? 0
  data.machine[type] = {
    fixed_ms: mean(machine?.fixed_ms ?? 0, sample.fixedMs, samples),
    ms_per_unit: mean(machine?.ms_per_unit ?? 0, sample.variableMs / sample.units, samples),
    samples: samples + 1,
  }
}

function programKey(type: ExecutorType, digest: string): string {
  return `${type}:${digest}`
}
