import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

/** The templates/ folder shipped with the package (src/core and dist/core are both two levels below the root). */
export function templatePath(name: string): string {
  return fileURLToPath(new URL(`../../templates/${name}`, import.meta.url))
}

/** Fills `{{name}}` slots; a slot without a value is a bug in the caller, not a silent blank. */
export function renderTemplate(name: string, values: Record<string, string>): string {
  return readFileSync(templatePath(name), 'utf8').replaceAll(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const value = values[key]
    if (value === undefined) throw new Error(`template ${name}: no value for {{${key}}}`)
    return value
  })
}
