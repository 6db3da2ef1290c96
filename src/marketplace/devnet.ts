import {join} from 'node:path'

import {UserError} from '../core/errors.js'

/** Where `outpost devnet` keeps its database and the renter key unless told otherwise. */
export function defaultDevnetDataDir(configDir: string): string {
  return join(configDir, 'devnet')
}

export const DEFAULT_DEVNET_PORT = 8787
export const DEFAULT_DEVNET_ENDPOINT = `http://127.0.0.1:${DEFAULT_DEVNET_PORT}`

const UNITS_MS: Readonly<Record<string, number>> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000}

/** Parses a period like `7d`, `30s`, `15m`, `2h` or `500ms` (a bare number is seconds) into milliseconds. */
export function parsePeriod(text: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim())
  if (!match) {
    throw new UserError(`${what}: "${text}" is not a period`, {code: 'invalid_period', suggestion: 'write a number with a unit: 30s, 15m, 2h, 7d'})
  }
  return Math.round(Number(match[1]) * (UNITS_MS[match[2] ?? 's'] ?? 1000))
}

/** Resolves when the process is asked to stop (SIGINT or SIGTERM), with the signal's name. */
export function shutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      resolve(signal)
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}
