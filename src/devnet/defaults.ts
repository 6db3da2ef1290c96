import {join} from 'node:path'

/** Where `outpost devnet` keeps its database and the renter key unless told otherwise. */
export function defaultDevnetDataDir(configDir: string): string {
  return join(configDir, 'devnet')
}

export const DEFAULT_DEVNET_PORT = 8787
export const DEFAULT_DEVNET_ENDPOINT = `http://127.0.0.1:${DEFAULT_DEVNET_PORT}`
