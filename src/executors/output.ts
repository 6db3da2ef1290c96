import {open} from 'node:fs/promises'

import {ExecutorError, MAX_OUTPUT_BYTES} from './executor.js'

/**
 * Reads a job's output file, at most MAX_OUTPUT_BYTES (§12). A missing file is the runner's failure (another provider
 * may do better); a larger one is the job's own size, the same anywhere.
 */
export async function readOutputFile(path: string, who: string): Promise<Buffer> {
  let file
  try {
    file = await open(path, 'r')
  } catch (error) {
    throw new ExecutorError('output_invalid', `${who} left no output`, {retryable: true, cause: error})
  }
  try {
    const stats = await file.stat()
    const size = stats.size
    if (!stats.isFile()) throw new ExecutorError('output_invalid', `${who} left something other than a file as its output`, {retryable: true})
    if (size > MAX_OUTPUT_BYTES) throw new ExecutorError('output_too_large', `the output is ${size} bytes, over the ${MAX_OUTPUT_BYTES} bytes a result may have`, {retryable: false})
    const buffer = Buffer.alloc(size)
    const {bytesRead} = await file.read(buffer, 0, size, 0)
    return buffer.subarray(0, bytesRead)
  } finally {
    await file.close()
  }
}
