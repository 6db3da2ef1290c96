import {readFileSync, writeFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {configReference} from '../src/core/config/reference.js'

/** Regenerates the README's configuration reference from the schema; `--check` fails when the README is stale. */
const README = fileURLToPath(new URL('../README.md', import.meta.url))
const START = '<!-- config-reference:start -->'
const END = '<!-- config-reference:end -->'

export function withReference(readme: string): string {
  const start = readme.indexOf(START)
  const end = readme.indexOf(END)
  if (start === -1 || end < start) throw new Error(`README.md has no ${START} ... ${END} block`)
  return `${readme.slice(0, start + START.length)}\n${configReference()}\n${readme.slice(end)}`
}

const current = readFileSync(README, 'utf8')
const updated = withReference(current)
if (process.argv.includes('--check')) {
  if (updated !== current) {
    console.error('README.md: the configuration reference is stale; run `npm run docs`')
    process.exit(1)
  }
} else if (updated !== current) {
  writeFileSync(README, updated)
  console.log('README.md: configuration reference updated')
}
