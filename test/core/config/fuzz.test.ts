import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {loadConfig, normalizeConfigText, type LoadedConfig} from '../../../src/core/config/load.js'
import {UserError} from '../../../src/core/errors.js'
import {BASES, MUTATION_KINDS, mutationCase, toToml, type MutationCase} from './config-mutations.js'

const SEED = 20_261_201
const CASES = 600

const root = mkdtempSync(join(tmpdir(), 'outpost-config-fuzz-'))
afterAll(() => rmSync(root, {recursive: true, force: true}))

function load(testCase: MutationCase, index: number): LoadedConfig | UserError {
  const dir = join(root, String(index))
  mkdirSync(dir, {recursive: true})
  const file = join(dir, 'outpost.toml')
  writeFileSync(file, testCase.content)
  try {
    return loadConfig(file, testCase.env)
  } catch (error) {
    if (error instanceof UserError) return error
    throw new Error(`${testCase.name}: not a UserError: ${String(error)}\n--- input ---\n${String(testCase.content)}`, {cause: error})
  }
}

const baseConfigs = new Map(Object.entries(BASES).map(([name, base]) => [name, load({name, content: toToml(base), env: {}, expect: {outcome: 'valid', base: name}}, -1 - Object.keys(BASES).indexOf(name))]))

function valueAt(root: unknown, path: readonly (string | number)[]): unknown {
  return path.reduce<unknown>((current, key) => (current as Record<string | number, unknown> | undefined)?.[key], root)
}

/** What the case's expectation says about the outcome; returns a failure description or undefined. */
function verdict(testCase: MutationCase, outcome: LoadedConfig | UserError): string | undefined {
  const expected = testCase.expect
  if (expected.outcome === 'valid') {
    if (outcome instanceof UserError) return `expected it to load, got: ${outcome.message}`
    const base = baseConfigs.get(expected.base)
    if (!(base && !(base instanceof UserError))) return `base ${expected.base} does not load`
    if (expected.changed) {
      const value = valueAt(outcome.config, expected.changed.path)
      return JSON.stringify(value) === JSON.stringify(expected.changed.value) ? undefined : `expected ${JSON.stringify(expected.changed.value)} at ${expected.changed.path.join('.')}, got ${JSON.stringify(value)}`
    }
    return JSON.stringify(outcome.config) === JSON.stringify(base.config) ? undefined : 'loaded to a different config than the valid file it came from'
  }
  if (!(outcome instanceof UserError)) return 'expected a config error, but it loaded'
  const message = outcome.message
  if (outcome.exit !== 3) return `exit ${outcome.exit}, expected 3`
  if (expected.key && !message.includes(expected.key)) return `the message does not name ${expected.key}:\n${message}`
  if (expected.variable && !message.includes(expected.variable)) return `the message does not name ${expected.variable}:\n${message}`
  if (expected.message && !expected.message.test(message)) return `the message does not match ${String(expected.message)}:\n${message}`
  if (expected.hidden && `${message}\n${outcome.suggestion ?? ''}`.includes(expected.hidden)) return `the message shows a secret value:\n${message}`
  if (expected.lineWord !== undefined) {
    const line = new RegExp(`line (\\d+): ${expected.key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:`).exec(message)
    if (!line) return `the message names no line for ${expected.key}:\n${message}`
    const text = normalizeConfigText(String(testCase.content)).split('\n')[Number(line[1]) - 1] ?? ''
    if (!text.includes(expected.lineWord)) return `line ${line[1]} is ${JSON.stringify(text)}, which does not hold ${expected.lineWord}`
  }
  return undefined
}

describe('config loader fuzz: seeded mutations of valid configs', () => {
  it('every base config is valid', () => {
    for (const [name, loaded] of baseConfigs) expect(loaded instanceof UserError ? `${name}: ${loaded.message}` : 'ok').toBe('ok')
  })

  it(`${CASES} mutations each load as expected or fail with exit 3 naming the key and its line, never a secret`, () => {
    const failures: string[] = []
    const kinds = new Map<string, number>()
    for (let index = 0; index < CASES; index++) {
      const testCase = mutationCase(SEED, index)
      const kind = testCase.name.split(': ')[1]?.split(' of ')[0] ?? ''
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
      const problem = verdict(testCase, load(testCase, index))
      if (problem) failures.push(`${testCase.name}: ${problem}\n--- input ---\n${String(testCase.content)}`)
    }
    expect(failures.slice(0, 3)).toEqual([])
    // Every kind of mutation ran, so a kind can't silently stop being generated.
    expect([...kinds.keys()].sort()).toEqual([...MUTATION_KINDS].sort())
  })
})
