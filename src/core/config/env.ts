import {z} from 'zod'

import {ConfigSchema} from './schema.js'

export interface EnvOverride {
  variable: string
  path: string[]
}

/** The schema inside defaults and optionals. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema
  while (current instanceof z.ZodDefault || current instanceof z.ZodOptional) current = current.unwrap() as z.ZodType
  return current
}

interface Leaf {
  path: string[]
  schema: z.ZodType
}

function leaves(schema: z.ZodType, path: string[]): Leaf[] {
  const inner = unwrap(schema)
  if (inner instanceof z.ZodObject) {
    return Object.entries(inner.shape as Record<string, z.ZodType>).flatMap(([key, child]) => leaves(child, [...path, key]))
  }
  if (inner instanceof z.ZodArray && unwrap(inner.element as z.ZodType) instanceof z.ZodObject) return []
  return [{path, schema: inner}]
}

/** Every key that an environment variable can set: OUTPOST_<SECTION>_<KEY>, e.g. OUTPOST_AGENT_HEARTBEAT_SECONDS. */
export const ENV_KEYS: readonly (Leaf & {variable: string})[] = leaves(ConfigSchema, []).map((leaf) => ({
  ...leaf,
  variable: 'OUTPOST_' + leaf.path.join('_').toUpperCase(),
}))

/** Environment text to the leaf's type; a value that doesn't convert is left as text, so the schema names it. */
function coerce(text: string, schema: z.ZodType): unknown {
  if (schema instanceof z.ZodNumber) return text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : text
  if (schema instanceof z.ZodBoolean) {
    if (/^(true|1|yes)$/i.test(text)) return true
    if (/^(false|0|no)$/i.test(text)) return false
    return text
  }
  if (schema instanceof z.ZodArray) {
    try {
      return JSON.parse(text) as unknown
    } catch {
      return text
    }
  }
  return text
}

/** Applies OUTPOST_* overrides to raw config data in place; returns which were applied, for error messages. */
export function applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): EnvOverride[] {
  const applied: EnvOverride[] = []
  for (const key of ENV_KEYS) {
    const text = env[key.variable]
    if (text === undefined) continue
    let target = raw
    for (const segment of key.path.slice(0, -1)) {
      const next = target[segment]
      if (next === null || typeof next !== 'object' || Array.isArray(next)) target[segment] = {}
      target = target[segment] as Record<string, unknown>
    }
    target[key.path.at(-1) as string] = coerce(text, key.schema)
    applied.push({variable: key.variable, path: key.path})
  }
  return applied
}
