import type {LoadedConfig} from '../core/config/load.js'
import {isUserError} from '../core/errors.js'
import type {JobKind} from '../executors/executor.js'
import type {ProgressMode} from '../ui/tasks.js'
import {EXAMPLE_OF_KIND, exampleJob, runLocal, type LocalJob, type RunLocalResult} from './run-local.js'

/** `outpost test-provision --jobs`: the built-in example of each kind [jobs] serves, run once through its executor. */

export interface KindTest {
  kind: JobKind
  status: 'passed' | 'failed' | 'skipped'
  result?: RunLocalResult
  /** Why it failed or was skipped, and what to do. */
  message?: string
  suggestion?: string
}

export interface JobsTestResult {
  ok: boolean
  /** [jobs] enabled: whether `outpost run` leases jobs at all. */
  enabled: boolean
  kinds: KindTest[]
}

/** A container example needs an image the engine has (nothing is pulled): the first of [jobs.docker] allowed_images. */
function containerExample(loaded: LoadedConfig): LocalJob | undefined {
  const {jobs} = loaded.config
  const image = jobs.executor.container === 'docker' ? jobs.docker.allowed_images?.[0] : undefined
  if (!image) return undefined
  const program = Buffer.from(JSON.stringify({image, command: ['sh', '-c', 'wc -c < /input > /output']}))
  return {kind: 'container', program, input: Buffer.from('outpost test-provision\n'), source: `example: wc -c in ${image}`}
}

export async function testJobs(options: {loaded: LoadedConfig; timeoutMs: number; signal?: AbortSignal}, progress: {mode: ProgressMode; log: (line: string) => void}): Promise<JobsTestResult> {
  const {loaded} = options
  const kinds: KindTest[] = []
  for (const kind of loaded.config.jobs.kinds) {
    const example = EXAMPLE_OF_KIND[kind]
    const local = example ? exampleJob(example) : kind === 'container' ? containerExample(loaded) : undefined
    if (!local) {
      kinds.push({
        kind,
        status: 'skipped',
        message: `no built-in ${kind} example for the ${loaded.config.jobs.executor[kind]} executor`,
        suggestion: kind === 'container' ? 'name an image the engine has in [jobs.docker] allowed_images, or run `outpost jobs run-local program.json input --kind container`' : `run \`outpost jobs run-local program input --kind ${kind}\``,
      })
      continue
    }
    if (progress.mode !== 'silent') progress.log(`${kind}: ${local.source}`)
    try {
      const result = await runLocal({loaded, local, timeoutMs: options.timeoutMs, signal: options.signal}, progress)
      kinds.push({kind, status: 'passed', result})
    } catch (error) {
      if (!isUserError(error)) throw error
      kinds.push({kind, status: 'failed', message: error.message, ...(error.suggestion ? {suggestion: error.suggestion} : {})})
    }
  }
  return {ok: kinds.every((test) => test.status !== 'failed'), enabled: loaded.config.jobs.enabled, kinds}
}
