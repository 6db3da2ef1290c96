import {join} from 'node:path'

import {resolveFrom} from '../core/config/paths.js'
import {BugError} from '../core/errors.js'
import {EXECUTOR_KINDS, type JobsSettings} from '../core/config/jobs.js'
import type {ExecutorType} from '../core/config/jobs.js'
import type {Executor, JobKind} from './executor.js'
import {SpeedBook} from './speed-book.js'

/** What every executor may need from the agent around it. */
export interface ExecutorContext {
  /** The config file: relative paths in [jobs] sections are resolved against its directory. */
  configPath: string
  /** The agent's state directory: the speed book lives there. */
  stateDir: string
  speed: SpeedBook
}

interface ExecutorBackend<Module> {
  /** Imports the executor's module: called on the executor's first use, so an agent that never runs a job of the kind doesn't load snarkjs or the simulator. */
  load: () => Promise<Module>
  fromConfig: (module: Module, jobs: JobsSettings, context: ExecutorContext) => Executor
}

function backend<Module>(entry: ExecutorBackend<Module>): ExecutorBackend<unknown> {
  return entry as ExecutorBackend<unknown>
}

function required<T>(section: T | undefined, type: ExecutorType): T {
  // The schema requires the section of every chosen executor; this keeps the compiler's narrowing honest.
  if (section === undefined) throw new BugError(`[jobs.${type}] is missing although an executor = "${type}" was accepted`)
  return section
}

/** One entry per executor type: how to load it and how to make it from `[jobs]`. */
export const EXECUTORS: Record<ExecutorType, ExecutorBackend<unknown>> = {
  snarkjs: backend({
    load: () => import('./snarkjs/snarkjs-executor.js'),
    fromConfig: (module, _jobs, context) => new module.SnarkjsExecutor(context.speed),
  }),
  'qasm-simulator': backend({
    load: () => import('./qasm/qasm-simulator-executor.js'),
    fromConfig: (module, jobs, context) => new module.QasmSimulatorExecutor(jobs.qasm_simulator, context.speed),
  }),
  docker: backend({
    load: () => import('./docker/docker-executor.js'),
    fromConfig: (module, jobs, context) => new module.DockerExecutor(jobs.docker, context.speed),
  }),
  script: backend({
    load: () => import('./script/script-executor.js'),
    fromConfig: (module, jobs, context) => {
      const section = required(jobs.script, 'script')
      return new module.ScriptExecutor({command: resolveFrom(context.configPath, section.command), killGraceMs: section.kill_grace_seconds * 1000}, context.speed)
    },
  }),
  slurm: backend({
    load: () => import('./slurm/slurm-executor.js'),
    fromConfig: (module, jobs, context) => {
      const section = required(jobs.slurm, 'slurm')
      return new module.SlurmExecutor(
        {
          ...section,
          command: resolveFrom(context.configPath, section.command),
          work_dir: resolveFrom(context.configPath, section.work_dir),
          ...(section.slurm_conf ? {slurm_conf: resolveFrom(context.configPath, section.slurm_conf)} : {}),
        },
        context.speed,
      )
    },
  }),
}

/** An executor whose module is imported on the first call of any of its methods. */
function lazyExecutor(type: ExecutorType, jobs: JobsSettings, context: ExecutorContext): Executor {
  const entry = EXECUTORS[type]
  let loading: Promise<Executor> | undefined
  const executor = () => (loading ??= entry.load().then((module) => entry.fromConfig(module, jobs, context)))
  return {
    type,
    kinds: EXECUTOR_KINDS[type],
    run: async (run) => (await executor()).run(run),
    estimate: async (request) => (await executor()).estimate(request),
    calibrate: async (signal) => (await executor()).calibrate?.(signal),
    verifySetup: async (signal) => (await executor()).verifySetup(signal),
    close: async () => {
      if (loading) await (await loading).close?.()
    },
  }
}

/** The speed book of an agent's state directory (measured run times, kept across restarts). */
export function speedBookFile(stateDir: string): string {
  return join(stateDir, 'executor-speed.json')
}

/**
 * The executor of each kind `[jobs]` serves. Kinds that name the same executor type share one instance (and its
 * worker pool). Nothing is imported until an executor is used.
 */
export function createExecutors(jobs: JobsSettings, context: Omit<ExecutorContext, 'speed'> & {speed?: SpeedBook}): Map<JobKind, Executor> {
  const full: ExecutorContext = {...context, speed: context.speed ?? new SpeedBook(speedBookFile(context.stateDir))}
  const byType = new Map<ExecutorType, Executor>()
  const byKind = new Map<JobKind, Executor>()
  for (const kind of jobs.kinds) {
    const type = jobs.executor[kind]
    let executor = byType.get(type)
    if (!executor) {
      executor = lazyExecutor(type, jobs, full)
      byType.set(type, executor)
    }
    byKind.set(kind, executor)
  }
  return byKind
}
