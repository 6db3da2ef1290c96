import {z} from 'zod'

import {unwrap} from '../../../src/core/config/env.js'
import {ConfigSchema} from '../../../src/core/config/schema.js'

/**
 * A seeded generator of mutated outpost.toml files, each with what loading it must give: the same config as the valid
 * file it came from (line ends, comments, quoting, a byte-order mark), or an exit-3 error naming the key it broke,
 * and its line or variable, never a secret's value.
 */

/** Mulberry32: small, seeded, the same sequence on every machine. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d_2b_79_f5) >>> 0
    let value = state
    value = Math.imul(value ^ (value >>> 15), value | 1)
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61)
    return ((value ^ (value >>> 14)) >>> 0) / 4_294_967_296
  }
}

type Random = () => number
const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)] as T

/** A value written into the TOML text as is: a huge integer, inf, nan. */
class RawToml {
  constructor(readonly text: string) {}
}

type Value = string | number | boolean | RawToml | Value[] | Table
interface Table {
  [key: string]: Value
}

const SECRET_MARK = 'S3CRETMARK'
const HETZNER_TOKEN = 'a'.repeat(32) + 'B'.repeat(32)
const PROXMOX_SECRET = '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0'

function offering(name: string, extra: Table = {}): Table {
  return {name, product_type: 'compute', cpu_cores: 2, memory_mb: 2048, storage_gb: 20, price_per_hour: '0.05', ...extra}
}

/** Valid configs, one per backend and one with every section, as parsed TOML data. */
export const BASES: Record<string, Table> = {
  local: {
    marketplace: {endpoint: 'http://127.0.0.1:8787'},
    provider: {name: 'Acme Compute', contact_email: 'ops@example.net', regions: ['eu-central']},
    agent: {heartbeat_seconds: 30, state_dir: 'state'},
    provisioner: {type: 'local', local: {command: ['/bin/sh', '-c', 'exec sleep 1000'], startup_timeout_seconds: 10}},
    offerings: [offering('small'), offering('large', {cpu_cores: 8, memory_mb: 16_384, region: 'eu-central'})],
    metrics: {enabled: true, listen: '127.0.0.1:9464'},
  },
  proxmox: {
    marketplace: {endpoint: 'https://api.example.net', provider_pubkey: 'ab'.repeat(32), request_timeout_seconds: 30},
    agent: {key_file: 'agent.key', state_dir: 'state', long_poll_wait_seconds: 25, lock_ttl_seconds: 900, max_concurrent_provisions: 4},
    provisioner: {
      type: 'proxmox',
      proxmox: {
        host: 'pve.example.net',
        port: 8006,
        token_id: 'outpost@pve!agent',
        token_secret: PROXMOX_SECRET,
        node: 'pve1',
        template_vmid: 9000,
        pool: 'outpost',
        ciuser: 'outpost',
        task_timeout_seconds: 600,
        ip_pool: {first: '192.0.2.10', last: '192.0.2.99', prefix_length: 24, gateway: '192.0.2.1'},
      },
    },
    offerings: [offering('vm-small', {product_type: 'dedicated'})],
    metrics: {listen: '0.0.0.0:9464'},
    logging: {level: 'debug', format: 'json'},
    bidding: {
      enabled: true,
      strategy: 'dynamic',
      prices: {cpu_core: '0.01', memory_gb: '0.002'},
      floor_price: '0.02',
      peak: {start_hour: 22, end_hour: 6, multiplier: '1.25'},
      scarcity: {above_percent: 80, multiplier: '1.5'},
      filters: {regions: ['eu-central'], gpu_models: ['a100'], min_duration_hours: 1, max_duration_hours: 720},
    },
  },
  docker: {
    marketplace: {endpoint: 'http://127.0.0.1:8787'},
    provisioner: {type: 'docker', docker: {image: 'outpost/ssh:1', command: ['sshd', '-D'], service_port: 22, bind_address: '0.0.0.0', username: 'root', password_env: 'OUTPOST_PASSWORD'}},
    offerings: [offering('box', {product_type: 'container'})],
  },
  hetzner: {
    marketplace: {endpoint: 'https://api.example.net'},
    provisioner: {type: 'hetzner', hetzner: {token: HETZNER_TOKEN, image: 'ubuntu-24.04', region: 'fsn1', server_types: ['cx22', 'cx32'], action_timeout_seconds: 600}},
    offerings: [offering('cloud-small')],
  },
  script: {
    marketplace: {endpoint: 'http://127.0.0.1:8787'},
    agent: {state_dir: '/var/lib/outpost'},
    provisioner: {type: 'script', script: {command: 'scripts/provision.sh', provision_timeout_seconds: 900}},
    bidding: {enabled: true, strategy: 'script', script: {command: 'scripts/bid.sh', timeout_seconds: 5}},
  },
  slurm: {
    marketplace: {endpoint: 'http://127.0.0.1:8787'},
    provisioner: {type: 'slurm', slurm: {partition: 'gpu', account: 'lab-1', nodes: 1, time_limit: '2-00:00:00', gpu_type: 'a100', ssh_port: 22, run_as: 'outpost-jobs'}},
    offerings: [offering('gpu-node', {product_type: 'gpu', gpu_count: 1})],
  },
  manual: {
    marketplace: {endpoint: 'http://127.0.0.1:8787'},
    provisioner: {type: 'manual', manual: {webhook_url: 'https://hooks.example.net/T000/B000/XXXXXXXX', poll_interval_seconds: 2}},
  },
}

/** The secret fields of the bases: a broken value there must never appear in an error. */
const SECRET_LEAVES = [
  ['provisioner', 'proxmox', 'token_secret'],
  ['provisioner', 'hetzner', 'token'],
  ['provisioner', 'manual', 'webhook_url'],
]

// --- writing TOML -------------------------------------------------------------------------------------------------

export interface Style {
  crlf: boolean
  comments: boolean
  bom: boolean
  quotedKeys: boolean
  literalStrings: boolean
  tabs: boolean
  shuffle: boolean
}

const PLAIN: Style = {crlf: false, comments: false, bom: false, quotedKeys: false, literalStrings: false, tabs: false, shuffle: false}

function randomStyle(random: Random): Style {
  return {
    crlf: random() < 0.3,
    comments: random() < 0.4,
    bom: random() < 0.1,
    quotedKeys: random() < 0.15,
    literalStrings: random() < 0.2,
    tabs: random() < 0.2,
    shuffle: random() < 0.3,
  }
}

const isTable = (value: Value): value is Table => typeof value === 'object' && !(value instanceof RawToml) && !Array.isArray(value)
const isTableArray = (value: Value): value is Table[] => Array.isArray(value) && value.length > 0 && value.every(isTable)

function basicString(text: string): string {
  return JSON.stringify(text).replaceAll(/[\u007F-\u009F]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

function tomlKey(key: string, style: Style): string {
  return style.quotedKeys || !/^[A-Za-z0-9_-]+$/.test(key) ? basicString(key) : key
}

function tomlValue(value: Value, style: Style): string {
  if (value instanceof RawToml) return value.text
  if (typeof value === 'string') {
    return style.literalStrings && /^[^'\p{Cc}]*$/u.test(value) ? `'${value}'` : basicString(value)
  }
  if (typeof value === 'number') return Number.isInteger(value) || !Number.isFinite(value) ? String(value) : value.toString()
  if (typeof value === 'boolean') return String(value)
  if (Array.isArray(value)) return `[${value.map((item) => tomlValue(item, style)).join(', ')}]`
  return `{${Object.entries(value).map(([key, item]) => `${tomlKey(key, style)} = ${tomlValue(item, style)}`).join(', ')}}`
}

function ordered(table: Table, style: Style, random: Random): [string, Value][] {
  const entries = Object.entries(table)
  if (!style.shuffle) return entries
  return entries.map((entry) => [random(), entry] as const).sort((a, b) => a[0] - b[0]).map(([, entry]) => entry)
}

function writeTable(lines: string[], header: string[] | undefined, table: Table, style: Style, random: Random, arrayElement = false): void {
  const entries = ordered(table, style, random)
  if (header) {
    const name = header.map((key) => tomlKey(key, style)).join('.')
    if (style.comments && random() < 0.5) lines.push(`# the ${name} section`)
    lines.push(arrayElement ? `[[${name}]]` : `[${name}]`)
  }
  const indent = style.tabs ? '\t' : ''
  for (const [key, value] of entries) {
    if (isTable(value) || isTableArray(value)) continue
    if (style.comments && random() < 0.2) lines.push(`${indent}# about ${key.replaceAll(/\p{Cc}/gu, '')}`)
    const equals = style.tabs ? '\t=\t' : ' = '
    lines.push(`${indent}${tomlKey(key, style)}${equals}${tomlValue(value, style)}${style.comments && random() < 0.2 ? ' # trailing note' : ''}`)
    if (style.comments && random() < 0.1) lines.push('')
  }
  for (const [key, value] of entries) {
    const path = [...(header ?? []), key]
    if (isTable(value)) {
      lines.push('')
      writeTable(lines, path, value, style, random)
    } else if (isTableArray(value)) {
      for (const element of value) {
        lines.push('')
        writeTable(lines, path, element, style, random, true)
      }
    }
  }
}

export function toToml(config: Table, style: Style = PLAIN, random: Random = seededRandom(1)): string {
  const lines: string[] = style.comments ? ['# Outpost configuration', ''] : []
  writeTable(lines, undefined, config, style, random)
  const text = lines.join(style.crlf ? '\r\n' : '\n') + (style.crlf ? '\r\n' : '\n')
  return style.bom ? `\uFEFF${text}` : text
}

// --- the cases ----------------------------------------------------------------------------------------------------

type Path = (string | number)[]

export type Expectation =
  /** Loads, to the same config as `base` (with `changed` applied), or with the field at `changed` set as given. */
  | {outcome: 'valid'; base: string; changed?: {path: Path; value: unknown}}
  /** Exit 3 naming `key`; `lineOf` (a word on the line the message must name) when the value came from the file. */
  | {outcome: 'invalid'; key: string; lineWord?: string; variable?: string; message?: RegExp; hidden?: string}

export interface MutationCase {
  name: string
  content: string | Uint8Array
  env: Record<string, string>
  expect: Expectation
}

function clone<T>(value: T): T {
  if (value instanceof RawToml) return value
  if (Array.isArray(value)) return value.map(clone) as T
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, clone(item)])) as T
  return value
}

function getAt(root: Table, path: Path): Value | undefined {
  let current: Value | undefined = root
  for (const key of path) {
    if (current === undefined || typeof current !== 'object' || current instanceof RawToml) return undefined
    current = (current as Record<string | number, Value>)[key]
  }
  return current
}

function setAt(root: Table, path: Path, value: Value | undefined): void {
  const parent = getAt(root, path.slice(0, -1)) as Record<string | number, Value>
  const key = path.at(-1) as string | number
  if (value === undefined) delete parent[key]
  else parent[key] = value
}

/** The dotted key as the loader prints it: offerings[1].name. */
export function dottedKey(path: Path): string {
  return path
    .map((key) => (typeof key === 'number' ? `[${key}]` : /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key)))
    .join('.')
    .replaceAll('.[', '[')
}

interface Leaf {
  path: Path
  value: Value
}

/** Every scalar, and every element of an array of scalars, of a config. */
function leaves(value: Value, path: Path): Leaf[] {
  if (isTable(value)) return Object.entries(value).flatMap(([key, item]) => leaves(item, [...path, key]))
  if (isTableArray(value)) return value.flatMap((item, index) => leaves(item, [...path, index]))
  if (Array.isArray(value)) return [{path, value}, ...value.map((item, index) => ({path: [...path, index], value: item}))]
  return [{path, value}]
}

function tables(value: Value, path: Path): Path[] {
  if (isTable(value)) return [path, ...Object.entries(value).flatMap(([key, item]) => tables(item, [...path, key]))]
  if (isTableArray(value)) return value.flatMap((item, index) => tables(item, [...path, index]))
  return []
}

/** The number schema at a path, for its bounds. */
function numberSchemaAt(path: Path): z.ZodNumber | undefined {
  let schema: z.ZodType = ConfigSchema
  for (const key of path) {
    schema = unwrap(schema)
    if (schema instanceof z.ZodArray) schema = schema.element as z.ZodType
    if (typeof key === 'number') continue
    if (!(schema instanceof z.ZodObject)) return undefined
    const next = (schema.shape as Record<string, z.ZodType | undefined>)[key]
    if (!next) return undefined
    schema = next
  }
  schema = unwrap(schema)
  return schema instanceof z.ZodNumber ? schema : undefined
}

const lastWord = (path: Path): string => String([...path].reverse().find((key) => typeof key === 'string'))
const isCommandArgument = (path: Path): boolean => typeof path.at(-1) === 'number' && path.at(-2) === 'command'
const isSecret = (path: Path): boolean => SECRET_LEAVES.some((secret) => secret.join('.') === path.join('.'))

const CONTROL = ['\u0000', '\u0001', '\u0007', '\u0008', '\u000B', '\u000C', '\r', '\u001B', '\u007F', '\u0085', '\u009B', '\t', '\n']
const HUGE = ['9007199254740993', '99999999999999999999', '-18446744073709551621', '0x10000000000000005', '9_223_372_036_854_775_808']
const BAD_LISTEN = ['0.0.0.0:99999', '127.0.0.1:123456', '127.0.0.1:65536', '127.0.0.1', ':9464', '[::1]:9464', '999.1.1.1:80', 'host name:80', 'a:b:9464', '-bad-.example:80']
const GOOD_LISTEN = ['localhost:9464', '0.0.0.0:1', '127.0.0.1:0', '127.0.0.1:65535', 'metrics.example.net:80', '10.0.0.1:09464']
const BAD_STATE_DIRS = ['/proc/self', '/proc/self/outpost-state', '/proc/1/fd/x', '/sys/kernel/outpost', '/sys']
const GOOD_WEIRD_STRINGS = ['Ünïcödé ✓', 'name with spaces', 'x'.repeat(64), '🚀 rocket']

/** The mutation kinds, each producing one case from a base config. */
type Mutator = (random: Random, base: string, config: Table, style: Style) => Omit<MutationCase, 'name' | 'content'> & {config?: Table; content?: string | Uint8Array}

function stringLeaves(config: Table): Leaf[] {
  return leaves(config, []).filter((leaf) => typeof leaf.value === 'string')
}

const MUTATORS: Record<string, Mutator> = {
  neutral: (_random, base) => ({env: {}, expect: {outcome: 'valid', base}}),

  wrongType: (random, _base, config) => {
    const candidates = leaves(config, []).filter((leaf) => !isCommandArgument(leaf.path) && typeof leaf.path.at(-1) === 'string')
    const leaf = pick(random, candidates)
    const replacement: Value = typeof leaf.value === 'string' ? pick(random, [12, true, ['x'], {x: 1}]) : typeof leaf.value === 'number' ? pick(random, ['12', true, [1]]) : typeof leaf.value === 'boolean' ? pick(random, ['true', 1]) : 'x'
    setAt(config, leaf.path, replacement)
    return {env: {}, expect: {outcome: 'invalid', key: dottedKey(leaf.path), lineWord: lastWord(leaf.path)}}
  },

  outOfRange: (random, _base, config) => {
    const numeric = leaves(config, []).filter((leaf) => typeof leaf.value === 'number' && numberSchemaAt(leaf.path))
    const leaf = pick(random, numeric)
    const schema = numberSchemaAt(leaf.path) as z.ZodNumber
    const options: Value[] = [1.5]
    if (schema.minValue !== null && schema.minValue > Number.MIN_SAFE_INTEGER) options.push(Math.ceil(schema.minValue) - 1)
    if (schema.maxValue !== null && schema.maxValue < Number.MAX_SAFE_INTEGER) options.push(Math.floor(schema.maxValue) + 1)
    options.push(new RawToml(pick(random, HUGE)), new RawToml(pick(random, ['inf', '-inf', 'nan', '1e400'])))
    setAt(config, leaf.path, pick(random, options))
    return {env: {}, expect: {outcome: 'invalid', key: dottedKey(leaf.path), lineWord: lastWord(leaf.path)}}
  },

  unknownKey: (random, _base, config) => {
    const table = pick(random, tables(config, []))
    const existing = Object.keys(getAt(config, table) as Table)
    const typo = existing.length > 0 ? pick(random, existing).replace(/[aeiou]/, '') + 'x' : 'extra'
    const key = pick(random, [typo, 'unexpected', 'with space', 'bell\u0007key', 'naïve', 'k'.repeat(30)])
    setAt(config, [...table, key], pick(random, [1, 'value', true]))
    return {env: {}, expect: {outcome: 'invalid', key: dottedKey([...table, key]), lineWord: key.split(/\p{Cc}/u)[0]}}
  },

  controlCharacter: (random, _base, config) => {
    const leaf = pick(random, stringLeaves(config))
    const char = pick(random, CONTROL)
    const text = leaf.value as string
    const at = Math.floor(random() * (text.length + 1))
    setAt(config, leaf.path, text.slice(0, at) + char + text.slice(at))
    if (isCommandArgument(leaf.path) && (char === '\t' || char === '\n')) {
      return {env: {}, expect: {outcome: 'valid', base: '', changed: {path: leaf.path, value: text.slice(0, at) + char + text.slice(at)}}}
    }
    return {env: {}, expect: {outcome: 'invalid', key: dottedKey(leaf.path), lineWord: lastWord(leaf.path), hidden: isSecret(leaf.path) ? text : undefined}}
  },

  stateDir: (random, _base, config) => {
    const key = pick(random, ['state_dir', 'key_file'] as const)
    const agent = (config.agent ??= {}) as Table
    agent[key] = pick(random, [...BAD_STATE_DIRS, '/proc/self/status'])
    return {env: {}, expect: {outcome: 'invalid', key: `agent.${key}`, lineWord: key}}
  },

  listen: (random, _base, config) => {
    const metrics = (config.metrics ??= {}) as Table
    if (random() < 0.3) {
      const listen = pick(random, GOOD_LISTEN)
      metrics.listen = listen
      return {env: {}, expect: {outcome: 'valid', base: '', changed: {path: ['metrics', 'listen'], value: listen}}}
    }
    metrics.listen = pick(random, BAD_LISTEN)
    return {env: {}, expect: {outcome: 'invalid', key: 'metrics.listen', lineWord: 'listen'}}
  },

  duplicateOffering: (random, _base, config) => {
    const offerings = (config.offerings ??= [offering('only')]) as Table[]
    const copy = clone(pick(random, offerings))
    if (random() < 0.5) copy.cpu_cores = 4
    offerings.push(copy)
    return {env: {}, expect: {outcome: 'invalid', key: `offerings[${offerings.length - 1}].name`, lineWord: 'name'}}
  },

  missingSection: (random, _base, config) => {
    const section = pick(random, ['marketplace', 'provisioner'])
    delete config[section]
    return {env: {}, expect: {outcome: 'invalid', key: `[${section}]`}}
  },

  unusualButValidText: (random, _base, config) => {
    const names = [['provider', 'name'], ['offerings', 0, 'name'], ['offerings', 0, 'region']].filter((path) => getAt(config, path.slice(0, -1)) !== undefined)
    if (names.length === 0) return {env: {}, expect: {outcome: 'valid', base: ''}}
    const path = pick(random, names)
    const value = pick(random, GOOD_WEIRD_STRINGS)
    setAt(config, path, value)
    return {env: {}, expect: {outcome: 'valid', base: '', changed: {path, value}}}
  },

  secret: (random, _base, config) => {
    // A backend's section is checked whatever the type, so a base without secrets gets a Hetzner one.
    if (!SECRET_LEAVES.some((path) => getAt(config, path) !== undefined)) (config.provisioner as Table).hetzner = {token: HETZNER_TOKEN}
    const path = pick(random, SECRET_LEAVES.filter((candidate) => getAt(config, candidate) !== undefined))
    const leaked = `${SECRET_MARK}-${Math.floor(random() * 1e6)}`
    const value = pick(random, [leaked, `${leaked} `, `${leaked}\u0000`, `ftp://${leaked}`])
    if (random() < 0.5) {
      setAt(config, path, value)
      return {env: {}, expect: {outcome: 'invalid', key: dottedKey(path), lineWord: lastWord(path), hidden: SECRET_MARK}}
    }
    const variable = `OUTPOST_${path.join('_').toUpperCase()}`
    return {env: {[variable]: value.replace('\u0000', '')}, expect: {outcome: 'invalid', key: dottedKey(path), variable, hidden: SECRET_MARK}}
  },

  environment: (random, _base, config) => {
    const numeric = leaves(config, []).filter((leaf) => typeof leaf.value === 'number' && !leaf.path.some((key) => typeof key === 'number'))
    const leaf = pick(random, numeric)
    const variable = `OUTPOST_${leaf.path.join('_').toUpperCase()}`
    return {env: {[variable]: pick(random, ['soon', '99999999999999999999', '-1e309', '1.5', 'NaN', ''])}, expect: {outcome: 'invalid', key: dottedKey(leaf.path), variable}}
  },

  deepNesting: (random, _base, config) => {
    const leaf = pick(random, leaves(config, []).filter((candidate) => typeof candidate.path.at(-1) === 'string'))
    const depth = pick(random, [17, 1000, 20_000])
    setAt(config, leaf.path, new RawToml(random() < 0.5 ? `${'['.repeat(depth)}1${']'.repeat(depth)}` : `${'{a = '.repeat(depth)}1${'}'.repeat(depth)}`))
    return {env: {}, expect: {outcome: 'invalid', key: dottedKey(leaf.path), lineWord: lastWord(leaf.path)}}
  },

  hugeFile: (_random, _base, config, style) => {
    const text = toToml(config, style)
    return {content: `${text}# ${'x'.repeat(1024 * 1024)}\n`, env: {}, expect: {outcome: 'invalid', key: '', message: /a config file is at most 1048576 bytes/}}
  },

  utf16: (_random, _base, config, style) => {
    const text = toToml(config, {...style, bom: false})
    return {content: new Uint8Array(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')])), env: {}, expect: {outcome: 'invalid', key: '', message: /UTF-16/}}
  },

  invalidUtf8: (random, _base, config, style) => {
    const leaf = pick(random, stringLeaves(config))
    const marker = 'ZZINVALIDZZ'
    setAt(config, leaf.path, marker)
    const text = toToml(config, {...style, bom: false})
    const bytes = Buffer.from(text, 'utf8')
    const at = bytes.indexOf(marker)
    const line = text.slice(0, text.indexOf(marker)).split('\n').length
    const broken = Buffer.concat([bytes.subarray(0, at), Buffer.from([pick(random, [0xff, 0xc3, 0x80, 0xed])]), bytes.subarray(at + marker.length)])
    return {content: new Uint8Array(broken), env: {}, expect: {outcome: 'invalid', key: '', message: new RegExp(`:${line}: not UTF-8 text`)}}
  },
}

export const MUTATION_KINDS = Object.keys(MUTATORS)

/** Case `index` of the sequence `seed`: the same input and expectation on every run. */
export function mutationCase(seed: number, index: number, kind = pick(seededRandom(seed * 7919 + index), MUTATION_KINDS)): MutationCase {
  const random = seededRandom(seed * 1_000_003 + index)
  const base = pick(random, Object.keys(BASES))
  const config = clone(BASES[base] as Table)
  const style = randomStyle(random)
  const made = (MUTATORS[kind] as Mutator)(random, base, config, style)
  const content = made.content ?? toToml(config, style, random)
  const expect = made.expect.outcome === 'valid' ? {...made.expect, base} : made.expect
  return {name: `seed ${seed} case ${index}: ${kind} of ${base}`, content, env: made.env, expect}
}
