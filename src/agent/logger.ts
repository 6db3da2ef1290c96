import {pino, type DestinationStream, type Level} from 'pino'

import {printable} from '../core/printable.js'

/** The agent's logger: pino's (details, message) call shape, as the provisioners' logger uses it. */
export interface AgentLog {
  debug(details: Record<string, unknown>, message: string): void
  info(details: Record<string, unknown>, message: string): void
  warn(details: Record<string, unknown>, message: string): void
  error(details: Record<string, unknown>, message: string): void
}

/** Secrets never reach a log line, even when a caller puts a whole object in `details` by mistake. */
const SECRET_KEYS = ['password', 'credentials', 'sealed_credentials', 'secret_key', 'seed', 'passphrase', 'token', 'api_token', 'authorization', 'signature']
export const REDACTED_PATHS = SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`])

export interface LoggerOptions {
  level: Level
  format: 'auto' | 'json' | 'pretty'
  /** Default: standard output. */
  stream?: NodeJS.WritableStream & {isTTY?: boolean}
}

const LEVEL_NAMES: Record<number, string> = {10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL'}
const OMITTED = new Set(['level', 'time', 'msg', 'pid', 'hostname'])

/** A value as `key=value` shows it; what a remote party wrote can't reach the terminal as control characters. */
function formatValue(value: unknown): string {
  if (typeof value === 'string') return printable(/[\s"=]/.test(value) ? JSON.stringify(value) : value)
  return printable(JSON.stringify(value) ?? 'undefined')
}

/** One pino JSON line as a short human line: `20:35:53.123 INFO  message key=value ...`. */
export function prettyLine(jsonLine: string): string {
  let record: Record<string, unknown>
  try {
    record = JSON.parse(jsonLine) as Record<string, unknown>
  } catch {
    return jsonLine
  }
  const time = typeof record.time === 'number' ? new Date(record.time).toISOString().slice(11, 23) : ''
  const level = (typeof record.level === 'number' ? LEVEL_NAMES[record.level] : undefined) ?? String(record.level)
  const fields = Object.entries(record)
    .filter(([key]) => !OMITTED.has(key))
    .map(([key, value]) => `${key}=${formatValue(value)}`)
  return `${time} ${level.padEnd(5)} ${printable(String(record.msg ?? ''))}${fields.length > 0 ? '  ' + fields.join(' ') : ''}\n`
}

export function createLogger(options: LoggerOptions): AgentLog {
  const stream = options.stream ?? process.stdout
  const pretty = options.format === 'pretty' || (options.format === 'auto' && Boolean(stream.isTTY))
  const destination: DestinationStream = pretty ? {write: (line: string) => stream.write(prettyLine(line))} : {write: (line: string) => stream.write(line)}
  return pino(
    {
      level: options.level,
      base: {pid: process.pid},
      redact: {paths: REDACTED_PATHS, censor: '[redacted]'},
    },
    destination,
  )
}
