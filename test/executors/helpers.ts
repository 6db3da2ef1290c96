import {createHash} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, expect} from 'vitest'

import {ExecutorError, type ExecutorFailure, type ExecutorJob, type JobKind} from '../../src/executors/executor.js'

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

/** A §12 job for these bytes (digests computed), due in ten minutes unless told otherwise. */
export function jobFor(kind: JobKind, program: Buffer, input: Buffer, overrides: Partial<ExecutorJob> = {}): ExecutorJob {
  return {
    job_id: `job-${sha256(Buffer.concat([program, input])).slice(0, 12)}`,
    kind,
    program: {digest: sha256(program), size_bytes: program.length},
    input: {digest: sha256(input), size_bytes: input.length},
    resources: {cpu_cores: 1, memory_mb: 256, gpu_count: 0},
    deadline: Date.now() + 600_000,
    ...overrides,
  }
}

const made: string[] = []
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, {recursive: true, force: true})
})

/** A fresh directory, removed after the test file. */
export function tempDir(prefix = 'outpost-executor-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  made.push(dir)
  return dir
}

export const never = new AbortController().signal

/** The ExecutorError a run ends in, checked for its code and whether it allows a retry elsewhere. */
export async function failure(work: Promise<unknown>, code: ExecutorFailure, retryable: boolean): Promise<ExecutorError> {
  const error = await work.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error).toBeInstanceOf(ExecutorError)
  const executorError = error as ExecutorError
  expect({code: executorError.code, retryable: executorError.retryable, message: executorError.message}).toMatchObject({code, retryable})
  return executorError
}
