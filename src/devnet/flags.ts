import {resolve} from 'node:path'
import {Flags} from '@oclif/core'

import {DEFAULT_DEVNET_ENDPOINT, defaultDevnetDataDir} from './defaults.js'

/** Flags every `outpost devnet` renter command takes: which devnet, and where its renter key lives. */
export const renterFlags = {
  endpoint: Flags.string({description: 'devnet API base URL', default: DEFAULT_DEVNET_ENDPOINT, env: 'OUTPOST_DEVNET_ENDPOINT'}),
  'data-dir': Flags.string({description: 'devnet data directory holding renter.key (default: <config dir>/devnet)', env: 'OUTPOST_DEVNET_DATA_DIR'}),
}

/** The devnet data directory: --data-dir, else the one beside the config. */
export function devnetDataDir(flag: string | undefined, configDir: string): string {
  return resolve(flag ?? defaultDevnetDataDir(configDir))
}
