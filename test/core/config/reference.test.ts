import {readFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'

import {ENV_KEYS} from '../../../src/core/config/env.js'
import {configReference} from '../../../src/core/config/reference.js'

describe('config reference', () => {
  it('in the README is the one generated from the schema (run `npm run docs` after changing the schema)', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8')
    expect(readme).toContain(`<!-- config-reference:start -->\n${configReference()}\n<!-- config-reference:end -->`)
  })

  it('lists every environment variable the config accepts', () => {
    const reference = configReference()
    for (const key of ENV_KEYS) expect(reference).toContain(`\`${key.variable}\``)
  })
})
