import {existsSync, readFileSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {z} from 'zod'

import {writeFileAtomic} from '../core/files.js'

/**
 * Where a running devnet says it listens: `endpoint.json` in its data dir, and `devnet.json` in the config dir (the
 * well-known place the renter commands look when given no --endpoint and no --data-dir).
 */
export const DATA_DIR_RECORD = 'endpoint.json'
export const CURRENT_DEVNET_RECORD = 'devnet.json'

const DevnetRecord = z.object({
  endpoint: z.url({protocol: /^https?$/}),
  data_dir: z.string().min(1),
  pid: z.number().int().positive(),
  started_at: z.number().int(),
})
export type DevnetRecord = z.infer<typeof DevnetRecord>

export function currentRecordPath(configDir: string): string {
  return join(configDir, CURRENT_DEVNET_RECORD)
}

export function dataDirRecordPath(dataDir: string): string {
  return join(dataDir, DATA_DIR_RECORD)
}

/** Both records, written once the devnet listens. */
export function recordDevnet(configDir: string, record: DevnetRecord): string[] {
  const files = [dataDirRecordPath(record.data_dir), currentRecordPath(configDir)]
  for (const file of files) writeFileAtomic(file, JSON.stringify(record, null, 2) + '\n', 0o600)
  return files
}

/**
 * On stop, the well-known record goes (when it is still this devnet's: another may have started since); the data
 * dir's stays, saying where this data was last served.
 */
export function forgetDevnet(configDir: string, record: DevnetRecord): void {
  const current = readDevnetRecord(currentRecordPath(configDir))
  if (current?.pid === record.pid && current.data_dir === record.data_dir) rmSync(currentRecordPath(configDir), {force: true})
}

/** A record, or undefined when there is none or it can't be read (then the defaults apply, as with none). */
export function readDevnetRecord(file: string): DevnetRecord | undefined {
  if (!existsSync(file)) return undefined
  try {
    const parsed = DevnetRecord.safeParse(JSON.parse(readFileSync(file, 'utf8')))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

/** Whether the process that wrote a record still runs (signal 0 checks without sending anything). */
export function recordedProcessRuns(record: DevnetRecord): boolean {
  try {
    process.kill(record.pid, 0)
    return true
  } catch (error) {
    return typeof error === 'object' && error !== null && 'code' in error && error.code === 'EPERM'
  }
}
