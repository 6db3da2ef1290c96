import {existsSync, readFileSync} from 'node:fs'
import TOML from '@iarna/toml'
import {z} from 'zod'

import {ExitCode, UserError} from '../errors.js'
import {closestMatch} from '../suggest.js'
import {applyEnvOverrides, unwrap, type EnvOverride} from './env.js'
import {resolveFrom} from './paths.js'
import {ConfigSchema, type OutpostConfig} from './schema.js'

export interface LoadedConfig {
  path: string
  config: OutpostConfig
  /** Absolute paths derived from the config, relative ones resolved against the config file's directory. */
  paths: {keyFile: string; stateDir: string}
}

const PLACEHOLDER = /changeme|^<[^>]*>$/i

function configError(message: string, suggestion: string, code = 'config_invalid'): UserError {
  return new UserError(message, {code, suggestion, exit: ExitCode.config})
}

interface TomlSyntaxError {
  message: string
  line: number
  col: number
}

function isTomlSyntaxError(error: unknown): error is TomlSyntaxError {
  return typeof error === 'object' && error !== null && 'line' in error && 'col' in error && 'message' in error
}

export function parseToml(text: string, file: string): Record<string, unknown> {
  try {
    return TOML.parse(text) as Record<string, unknown>
  } catch (error) {
    if (isTomlSyntaxError(error)) {
      const reason = (error.message.split('\n')[0] ?? 'syntax error').replace(/ at row \d+, col \d+, pos \d+:?$/, '')
      throw configError(`${file}:${error.line + 1}:${error.col + 1}: TOML syntax error: ${reason}`, 'fix the line shown, then run `outpost doctor`', 'config_syntax')
    }
    throw error
  }
}

function findPlaceholders(value: unknown, path: PropertyKey[], found: PropertyKey[][]): void {
  if (typeof value === 'string' && PLACEHOLDER.test(value.trim())) found.push(path)
  else if (Array.isArray(value)) value.forEach((item, index) => findPlaceholders(item, [...path, index], found))
  else if (value && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) findPlaceholders(item, [...path, key], found)
  }
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let current = root
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined
    current = (current as Record<PropertyKey, unknown>)[key]
  }
  return current
}

/** The object schema at a path of the config (array indices skipped), to list the keys it allows. */
function objectKeysAt(path: readonly PropertyKey[]): string[] {
  let schema: z.ZodType = ConfigSchema
  for (const key of path) {
    schema = unwrap(schema)
    if (schema instanceof z.ZodArray) schema = unwrap(schema.element as z.ZodType)
    if (typeof key === 'number') continue
    if (!(schema instanceof z.ZodObject)) return []
    const next = (schema.shape as Record<string, z.ZodType>)[String(key)]
    if (!next) return []
    schema = next
  }
  schema = unwrap(schema)
  if (schema instanceof z.ZodArray) schema = unwrap(schema.element as z.ZodType)
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : []
}

function dotted(path: readonly PropertyKey[]): string {
  return path.map((key) => (typeof key === 'number' ? `[${key}]` : String(key))).join('.').replaceAll('.[', '[')
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown, overrides: EnvOverride[]): string {
  const where = dotted(issue.path) || '(top level)'
  if (issue.code === 'unrecognized_keys') {
    return issue.keys
      .map((key) => {
        const guess = closestMatch(key, objectKeysAt(issue.path))
        const at = issue.path.length > 0 ? `${where}.${key}` : key
        return `${at}: unknown key${guess ? ` (did you mean "${guess}"?)` : ''}`
      })
      .join('\n')
  }
  const value = valueAt(raw, issue.path)
  if (value === undefined && issue.code === 'invalid_type') {
    return issue.path.length === 1 ? `[${where}]: missing section` : `${where}: missing (${issue.message.replace(/, received undefined$/, '')})`
  }
  const fromEnv = overrides.find((override) => override.path.join('.') === issue.path.join('.'))
  const shown = JSON.stringify(value)
  return `${where}: ${issue.message} (got ${shown && shown.length > 60 ? shown.slice(0, 57) + '...' : shown}${fromEnv ? ` from ${fromEnv.variable}` : ''})`
}

/** Validates raw config data (already parsed from TOML) into the typed config, with errors that name the key. */
export function validateConfig(raw: Record<string, unknown>, file: string, env: NodeJS.ProcessEnv = process.env): OutpostConfig {
  const overrides = applyEnvOverrides(raw, env)
  const placeholders: PropertyKey[][] = []
  findPlaceholders(raw, [], placeholders)
  if (placeholders.length > 0) {
    throw configError(
      `${file}: ${placeholders.map((path) => dotted(path)).join(', ')}: still a placeholder value`,
      'replace the placeholder with the real value',
      'config_placeholder',
    )
  }
  const parsed = ConfigSchema.safeParse(raw)
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => describeIssue(issue, raw, overrides))
    throw configError(`${file}: invalid configuration:\n  ${lines.join('\n  ')}`, 'fix the keys named above, then run `outpost doctor`')
  }
  return parsed.data
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  if (!existsSync(file)) {
    throw configError(`no configuration at ${file}`, 'run `outpost init` to create one, or pass --config', 'config_missing')
  }
  const config = validateConfig(parseToml(readFileSync(file, 'utf8'), file), file, env)
  return {
    path: file,
    config,
    paths: {keyFile: resolveFrom(file, config.agent.key_file), stateDir: resolveFrom(file, config.agent.state_dir)},
  }
}
