import {z} from 'zod'

import {unwrap} from './env.js'
import {ConfigSchema} from './schema.js'

interface ReferenceRow {
  key: string
  type: string
  defaultValue: string
  description: string
  variable: string
}

function typeName(schema: z.ZodType): string {
  const inner = unwrap(schema)
  if (inner instanceof z.ZodEnum) return inner.options.map((option) => `"${String(option)}"`).join(' \\| ')
  if (inner instanceof z.ZodNumber) return inner.format === 'safeint' || inner.isInt ? 'integer' : 'number'
  if (inner instanceof z.ZodBoolean) return 'boolean'
  if (inner instanceof z.ZodArray) return `array of ${typeName(inner.element as z.ZodType)}`
  if (inner instanceof z.ZodObject) return 'table'
  if (inner instanceof z.ZodRecord) return `table of ${typeName(inner.valueType as z.ZodType)}`
  return 'string'
}

function defaultOf(schema: z.ZodType): string {
  let current = schema
  while (current instanceof z.ZodOptional || current instanceof z.ZodDefault) {
    if (current instanceof z.ZodDefault) {
      const value: unknown = current.def.defaultValue
      return typeof value === 'object' ? '' : JSON.stringify(value)
    }
    current = current.unwrap() as z.ZodType
  }
  return schema instanceof z.ZodOptional ? '(none)' : '**required**'
}

function rows(schema: z.ZodType, path: string[], arrayTable: boolean): ReferenceRow[] {
  const inner = unwrap(schema)
  if (inner instanceof z.ZodObject) {
    return Object.entries(inner.shape as Record<string, z.ZodType>).flatMap(([key, child]) => {
      const childInner = unwrap(child)
      if (childInner instanceof z.ZodArray && unwrap(childInner.element as z.ZodType) instanceof z.ZodObject) {
        return rows(childInner.element as z.ZodType, [...path, `[${key}]`], true)
      }
      return rows(child, [...path, key], arrayTable)
    })
  }
  // An array of tables appears as [offerings] in the path, so its key reads [[offerings]] name.
  return [
    {
      key: `${tableHeader(path.slice(0, -1))} ${path.at(-1) ?? ''}`,
      type: typeName(schema),
      defaultValue: defaultOf(schema),
      description: schema.description ?? unwrap(schema).description ?? '',
      variable: arrayTable ? '' : `OUTPOST_${path.join('_').toUpperCase()}`,
    },
  ]
}

/** `[section]`, or `[[gpu.passthrough]]` for the keys of an array of tables (its segment is written `[name]`). */
function tableHeader(table: string[]): string {
  const names = table.map((segment) => segment.replace(/^\[(.*)\]$/, '$1'))
  return table.at(-1)?.startsWith('[') ? `[[${names.join('.')}]]` : `[${names.join('.')}]`
}

/** The README's configuration reference, generated from the schema so the two can't drift. */
export function configReference(): string {
  const header = '| key | type | default | environment | meaning |\n|---|---|---|---|---|'
  const lines = rows(ConfigSchema, [], false).map((row) =>
    `| \`${row.key}\` | ${row.type} | ${row.defaultValue ? `\`${row.defaultValue}\``.replace('`**required**`', '**required**').replace('`(none)`', '') : ''} | ${row.variable ? `\`${row.variable}\`` : ''} | ${row.description.replaceAll('|', '\\|')} |`,
  )
  return [header, ...lines].join('\n')
}
