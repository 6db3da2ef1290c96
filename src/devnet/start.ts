import {UserError} from '../core/errors.js'
import type {ListenOptions, MarketplaceOptions, MarketplaceServer} from '../marketplace/server.js'
import {forgetDevnet, recordDevnet, type DevnetRecord} from './record.js'

export interface RunningDevnet {
  server: MarketplaceServer
  /** The files that say where it listens, for the renter commands. */
  recordedIn: string[]
  /** Stops serving, closes the database, and takes back the well-known record. */
  stop(): Promise<void>
}

/**
 * `outpost devnet start`: the reference marketplace, listening, and recorded (in its data dir and the config dir) so
 * the renter commands find it. A port in use is the user's to fix, not a bug.
 */
export async function startDevnet(options: MarketplaceOptions & ListenOptions & {configDir: string}): Promise<RunningDevnet> {
  // SQLite is loaded only here, so the rest of the CLI starts without it.
  const {startMarketplace} = await import('../marketplace/server.js')
  let server: MarketplaceServer
  try {
    server = await startMarketplace(options)
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'EADDRINUSE') {
      throw new UserError(`port ${options.port} on ${options.host} is in use`, {code: 'port_in_use', suggestion: 'stop what uses it, or pass --port 0 for a free port', cause: error})
    }
    throw error
  }
  const record: DevnetRecord = {endpoint: server.endpoint, data_dir: options.dataDir, pid: process.pid, started_at: Date.now()}
  const recordedIn = recordDevnet(options.configDir, record)
  return {
    server,
    recordedIn,
    async stop() {
      forgetDevnet(options.configDir, record)
      await server.stop()
    },
  }
}
