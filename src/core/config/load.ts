import {existsSync, readFileSync, realpathSync, statfsSync, statSync} from 'node:fs'
import {basename, dirname, join} from 'node:path'
import TOML from '@iarna/toml'
import {z} from 'zod'

import {ExitCode, UserError} from '../errors.js'
import {closestMatch} from '../suggest.js'
import {applyEnvOverrides, ENV_KEYS, unwrap, type EnvOverride} from './env.js'
import {KeyLines, type ConfigPath} from './locate.js'
import {resolveFrom} from './paths.js'
import {ConfigSchema, secretFields, type OutpostConfig} from './schema.js'

export interface LoadedConfig {
  path: string
  config: OutpostConfig
  /** Absolute paths derived from the config, relative ones resolved against the config file's directory. */
  paths: {keyFile: string; stateDir: string}
}

/** Far above any real config; a bound so that `--config /dev/zero` or a runaway file can't hang a command. */
const MAX_CONFIG_BYTES = 1024 * 1024

const PLACEHOLDER = /changeme|^<[^>]*>$/i
/** No config value needs a control character (a NUL breaks every path and name), except a command's arguments: tab and newline. */
const CONTROL_CHARACTER = /\p{Cc}/u
const CONTROL_IN_ARGUMENT = /(?![\t\n])\p{Cc}/u

/** Where a secret field lives: a value there, or in its place (a string where its table should be), is never shown. */
const SECRET_PATHS: readonly string[][] = ENV_KEYS.filter((key) => secretFields.get(key.schema)?.secret).map((key) => key.path)

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

/** TOML allows CRLF line ends (the parser trips on them after a comment); an editor may also add a byte-order mark. */
export function normalizeConfigText(text: string): string {
  return text.replace(/^\uFEFF/, '').replaceAll('\r\n', '\n')
}

export function parseToml(text: string, file: string): Record<string, unknown> {
  try {
    return TOML.parse(normalizeConfigText(text)) as Record<string, unknown>
  } catch (error) {
    if (isTomlSyntaxError(error)) {
      const reason = (error.message.split('\n')[0] ?? 'syntax error').replace(/ at row \d+, col \d+, pos \d+:?$/, '')
      throw configError(`${file}:${error.line + 1}:${error.col + 1}: TOML syntax error: ${reason}`, 'fix the line shown, then run `outpost doctor`', 'config_syntax')
    }
    throw error
  }
}

/** The bytes of a config file as text: UTF-8 (a UTF-16 file or a stray byte is named with its line). */
export function decodeConfig(bytes: Uint8Array, file: string): string {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    throw configError(`${file}: the file is UTF-16 text`, 'save it as UTF-8, then run `outpost doctor`', 'config_syntax')
  }
  const decoder = new TextDecoder('utf-8', {fatal: true})
  try {
    return decoder.decode(bytes)
  } catch {
    let line = 1
    let start = 0
    for (let index = 0; index <= bytes.length; index++) {
      if (index < bytes.length && bytes[index] !== 0x0a) continue
      try {
        decoder.decode(bytes.subarray(start, index))
      } catch {
        break
      }
      line++
      start = index + 1
    }
    throw configError(`${file}:${line}: not UTF-8 text`, 'save the file as UTF-8, then run `outpost doctor`', 'config_syntax')
  }
}

function readConfigText(file: string): string {
  let size: number
  try {
    const stats = statSync(file)
    if (!stats.isFile()) throw configError(`${file} is not a regular file`, 'pass the path of an outpost.toml with --config', 'config_unreadable')
    size = stats.size
  } catch (error) {
    if (error instanceof UserError) throw error
    throw unreadable(file, error)
  }
  if (size > MAX_CONFIG_BYTES) {
    throw configError(`${file} is ${size} bytes; a config file is at most ${MAX_CONFIG_BYTES} bytes`, 'pass the path of an outpost.toml with --config', 'config_unreadable')
  }
  try {
    return decodeConfig(readFileSync(file), file)
  } catch (error) {
    if (error instanceof UserError) throw error
    throw unreadable(file, error)
  }
}

function unreadable(file: string, error: unknown): UserError {
  const code = typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : 'unknown error'
  return configError(`cannot read ${file} (${code})`, 'check the path and its permissions, then run `outpost doctor`', 'config_unreadable')
}

/** One problem with one key; `label` replaces the dotted key (a missing section reads `[marketplace]`). */
interface ConfigIssue {
  path: ConfigPath
  message: string
  showValue: boolean
  label?: string
  /** Name the key's own line or none (an unknown key), never its table's line in its stead. */
  exactLine?: boolean
}

interface IssueContext {
  raw: unknown
  overrides: EnvOverride[]
  lines: KeyLines | undefined
}

function valueAt(root: unknown, path: ConfigPath): unknown {
  let current = root
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined
    current = (current as Record<PropertyKey, unknown>)[key]
  }
  return current
}

/** The object schema at a path of the config (array indices skipped), to list the keys it allows. */
function objectKeysAt(path: ConfigPath): string[] {
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

function holdsSecret(path: ConfigPath): boolean {
  const keys = path.filter((key) => typeof key !== 'number').map(String)
  return SECRET_PATHS.some((secret) => keys.every((key, index) => index >= secret.length || secret[index] === key))
}

/** A key as written in a message: bare when it is a plain TOML key, quoted and escaped otherwise. */
function keyText(key: PropertyKey): string {
  const text = String(key)
  return /^[A-Za-z0-9_-]+$/.test(text) ? text : quoted(text, 40)
}

function dotted(path: ConfigPath): string {
  return path.map((key) => (typeof key === 'number' ? `[${key}]` : keyText(key))).join('.').replaceAll('.[', '[')
}

/** JSON-quoted, with every unprintable character escaped, so a value can't write to the terminal; cut at `max`. */
function quoted(text: string, max: number): string {
  const escaped = JSON.stringify(text).replaceAll(/[\u007F-\u009F\u2028\u2029\u202A-\u202E\u2066-\u2069]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
  return escaped.length > max ? `${escaped.slice(0, max - 4)}..."` : escaped
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return quoted(value, 60)
  if (typeof value === 'number') return Number.isNaN(value) ? 'nan' : Number.isFinite(value) ? String(value) : value > 0 ? 'inf' : '-inf'
  if (typeof value === 'boolean') return String(value)
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'an invalid date' : value.toISOString()
  if (Array.isArray(value)) return 'an array'
  return 'a table'
}

function formatIssue(issue: ConfigIssue, context: IssueContext): string {
  const override = context.overrides.find((candidate) => candidate.path.join('\0') === issue.path.join('\0'))
  const line = override ? undefined : issue.exactLine ? context.lines?.exactLineOf(issue.path) : context.lines?.lineOf(issue.path)
  const value = valueAt(context.raw, issue.path)
  let got = ''
  if (issue.showValue && value !== undefined) {
    const hidden = holdsSecret(issue.path) && (value === null || typeof value !== 'object' || value instanceof Date)
    got = hidden ? ` (value not shown: secret${override ? `, from ${override.variable}` : ''})` : ` (got ${describeValue(value)}${override ? ` from ${override.variable}` : ''})`
  } else if (override) got = ` (from ${override.variable})`
  return `${line === undefined ? '' : `line ${line}: `}${issue.label ?? (dotted(issue.path) || '(top level)')}: ${issue.message}${got}`
}

function fromZodIssue(issue: z.core.$ZodIssue, raw: unknown): ConfigIssue[] {
  const path = issue.path
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const guess = closestMatch(key, objectKeysAt(path))
      return {path: [...path, key], message: `unknown key${guess ? ` (did you mean "${guess}"?)` : ''}`, showValue: false, exactLine: true}
    })
  }
  const value = valueAt(raw, path)
  if (value === undefined && issue.code === 'invalid_type') {
    if (path.length === 1) return [{path, message: 'missing section', showValue: false, label: `[${keyText(path[0] ?? '')}]`}]
    return [{path, message: `missing (${issue.message.replace(/^Invalid input: /, '').replace(/, received undefined$/, '')})`, showValue: false}]
  }
  if (typeof value === 'bigint') {
    return [{path, message: `integer out of range: expected one between -${Number.MAX_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}`, showValue: false}]
  }
  return [{path, message: issue.message, showValue: true}]
}

/** Far deeper than any config key: a value nested deeper is refused before anything walks it (and runs out of stack). */
const MAX_DEPTH = 16

/** Strings anywhere in the config (the schema may not look inside every one) that are placeholders or unprintable. */
function textIssues(value: unknown, path: PropertyKey[], found: ConfigIssue[]): void {
  if (path.length > MAX_DEPTH) {
    found.push({path: path.slice(0, 3), message: `nested more than ${MAX_DEPTH} levels deep`, showValue: false})
  } else if (typeof value === 'string') {
    if (PLACEHOLDER.test(value.trim())) found.push({path, message: 'still a placeholder value', showValue: false})
    const isArgument = typeof path.at(-1) === 'number' && path.at(-2) === 'command'
    const control = (isArgument ? CONTROL_IN_ARGUMENT : CONTROL_CHARACTER).exec(value)
    if (control) {
      const code = `U+${control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`
      found.push({path, message: `contains the control character ${code}`, showValue: false})
    }
  } else if (Array.isArray(value)) value.forEach((item, index) => textIssues(item, [...path, index], found))
  else if (value && typeof value === 'object' && !(value instanceof Date)) {
    for (const [key, item] of Object.entries(value)) textIssues(item, [...path, key], found)
  }
}

function invalid(file: string, issues: ConfigIssue[], context: IssueContext): UserError {
  const placeholdersOnly = issues.every((issue) => issue.message === 'still a placeholder value')
  return configError(
    `${file}: invalid configuration:\n  ${issues.map((issue) => formatIssue(issue, context)).join('\n  ')}`,
    placeholdersOnly ? 'replace the placeholder with the real value' : 'fix the keys named above, then run `outpost doctor`',
    placeholdersOnly ? 'config_placeholder' : 'config_invalid',
  )
}

function checkConfig(raw: Record<string, unknown>, file: string, env: NodeJS.ProcessEnv, text: string | undefined): {config: OutpostConfig; context: IssueContext} {
  const overrides = applyEnvOverrides(raw, env)
  const context: IssueContext = {raw, overrides, lines: text === undefined ? undefined : new KeyLines(normalizeConfigText(text))}
  const issues: ConfigIssue[] = []
  textIssues(raw, [], issues)
  const parsed = ConfigSchema.safeParse(raw)
  if (!parsed.success) {
    const reported = new Set(issues.map((issue) => issue.path.join('\0')))
    issues.push(...parsed.error.issues.flatMap((issue) => fromZodIssue(issue, raw)).filter((issue) => !reported.has(issue.path.join('\0'))))
  }
  if (!parsed.success || issues.length > 0) throw invalid(file, issues, context)
  return {config: parsed.data, context}
}

/**
 * Validates raw config data (already parsed from TOML) into the typed config, with errors that name the key and, when
 * the text is given, its line. A secret field's value is never part of an error.
 */
export function validateConfig(raw: Record<string, unknown>, file: string, env: NodeJS.ProcessEnv = process.env, text?: string): OutpostConfig {
  return checkConfig(raw, file, env, text).config
}

/** Kernel filesystems: nothing can be stored there, and Node's recursive mkdir loops forever under /proc. */
const PSEUDO_FILESYSTEMS = new Map<number, string>([
  [0x9f_a0, 'proc'],
  [0x62_65_65_72, 'sysfs'],
  [0x1c_d1, 'devpts'],
  [0x27_e0_eb, 'cgroup'],
  [0x63_67_72_70, 'cgroup2'],
  [0x64_62_67_20, 'debugfs'],
  [0x74_72_61_63, 'tracefs'],
  [0x73_63_66_73, 'securityfs'],
  [0xca_fe_4a_11, 'bpf'],
  [0x62_65_65_70, 'configfs'],
  [0x61_65_67_6c, 'pstore'],
  [0xde_5e_81_e4, 'efivarfs'],
  [0x42_49_4e_4d, 'binfmt_misc'],
  [0x19_80_02_02, 'mqueue'],
  [0x6e_73_66_73, 'nsfs'],
])

/** Why a path from the config can't hold the agent's files, or undefined; what can't be looked at is left to its user. */
function localPathProblem(path: string, kind: 'file' | 'directory'): string | undefined {
  let existing = path
  const missing: string[] = []
  while (!existsSync(existing) && dirname(existing) !== existing) {
    missing.unshift(basename(existing))
    existing = dirname(existing)
  }
  try {
    const real = realpathSync(existing)
    const full = join(real, ...missing)
    const pseudo = /^\/(?:proc|sys)(?:\/|$)/.test(full) ? full.split('/')[1] : PSEUDO_FILESYSTEMS.get(statfsSync(real).type)
    if (pseudo) return `${full} is on the kernel's ${pseudo} filesystem, which can't hold files`
    const stats = statSync(real)
    if (missing.length > 0 && !stats.isDirectory()) return `${real} is not a directory`
    if (missing.length === 0 && kind === 'directory' && !stats.isDirectory()) return `${path} is not a directory`
    if (missing.length === 0 && kind === 'file' && !stats.isFile()) return `${path} is not a regular file`
  } catch {
    return undefined
  }
  return undefined
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  if (!existsSync(file)) {
    throw configError(`no configuration at ${file}`, 'run `outpost init` to create one, or pass --config', 'config_missing')
  }
  const text = readConfigText(file)
  const {config, context} = checkConfig(parseToml(text, file), file, env, text)
  const paths = {keyFile: resolveFrom(file, config.agent.key_file), stateDir: resolveFrom(file, config.agent.state_dir)}
  const issues: ConfigIssue[] = []
  const keyFileProblem = localPathProblem(paths.keyFile, 'file')
  if (keyFileProblem) issues.push({path: ['agent', 'key_file'], message: keyFileProblem, showValue: true})
  const stateDirProblem = localPathProblem(paths.stateDir, 'directory')
  if (stateDirProblem) issues.push({path: ['agent', 'state_dir'], message: stateDirProblem, showValue: true})
  if (issues.length > 0) throw invalid(file, issues, context)
  return {path: file, config, paths}
}
