import {resolve} from 'node:path'
import * as Flags from '@oclif/core/flags'

import {checkEndpoint} from '../setup/init-answers.js'
import {DEFAULT_DEVNET_ENDPOINT, defaultDevnetDataDir} from './defaults.js'
import {currentRecordPath, dataDirRecordPath, readDevnetRecord, type DevnetRecord} from './record.js'

/** Flags every `outpost devnet` renter command takes: which devnet, and where its renter key lives. */
export const renterFlags = {
  endpoint: Flags.string({description: `devnet API base URL (default: the devnet \`outpost devnet start\` recorded, else ${DEFAULT_DEVNET_ENDPOINT})`, env: 'OUTPOST_DEVNET_ENDPOINT'}),
  'data-dir': Flags.string({description: "devnet data directory, holding its renter.key (default: the running devnet's, else <config dir>/devnet)", env: 'OUTPOST_DEVNET_DATA_DIR'}),
}

/** The devnet a renter command talks to, and where that choice came from (for the error that says it isn't there). */
export interface DevnetTarget {
  endpoint: string
  dataDir: string
  /** The record the endpoint came from, when it came from one. */
  record?: DevnetRecord
  /** The flags to repeat so that a printed follow-up command reaches the same devnet. */
  flags: string[]
}

/** The devnet data directory: --data-dir, else the one beside the config. */
export function devnetDataDir(flag: string | undefined, configDir: string): string {
  return resolve(flag ?? defaultDevnetDataDir(configDir))
}

/**
 * Which devnet: --endpoint and --data-dir when given; else what the devnet started last recorded (its data dir's
 * record, or the well-known one in the config dir); else the defaults.
 */
export function devnetTarget(flags: {endpoint?: string; 'data-dir'?: string}, configDir: string): DevnetTarget {
  const current = flags['data-dir'] === undefined ? readDevnetRecord(currentRecordPath(configDir)) : undefined
  const dataDir = flags['data-dir'] === undefined ? (current?.data_dir ?? defaultDevnetDataDir(configDir)) : resolve(flags['data-dir'])
  const given = [...(flags.endpoint === undefined ? [] : ['--endpoint', flags.endpoint]), ...(flags['data-dir'] === undefined ? [] : ['--data-dir', dataDir])]
  if (flags.endpoint !== undefined) return {endpoint: checkEndpoint(flags.endpoint), dataDir, flags: given}
  const record = readDevnetRecord(dataDirRecordPath(dataDir)) ?? current
  return {endpoint: record?.endpoint ?? DEFAULT_DEVNET_ENDPOINT, dataDir, ...(record ? {record} : {}), flags: given}
}
