import {UserError} from '../core/errors.js'
import type {ListenOptions, MarketplaceOptions, MarketplaceServer} from '../marketplace/server.js'

/** `outpost devnet start`: the reference marketplace, listening; a port in use is the user's to fix, not a bug. */
export async function startDevnet(options: MarketplaceOptions & ListenOptions): Promise<MarketplaceServer> {
  // SQLite is loaded only here, so the rest of the CLI starts without it.
  const {startMarketplace} = await import('../marketplace/server.js')
  try {
    return await startMarketplace(options)
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'EADDRINUSE') {
      throw new UserError(`port ${options.port} on ${options.host} is in use`, {code: 'port_in_use', suggestion: 'stop what uses it, or pass --port 0 for a free port', cause: error})
    }
    throw error
  }
}
