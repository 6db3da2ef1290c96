import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {EXAMPLE_DIR, makeCircuitArtefacts, PTAU, stopSnarkjs} from '../../scripts/zk-example.js'
import {tempDir} from './helpers.js'

afterAll(stopSnarkjs)

describe('the zk example', () => {
  it('is what its circuit source and the committed Powers of Tau make, byte for byte (npm run zk:example)', async () => {
    const made = await makeCircuitArtefacts(PTAU, tempDir('outpost-zk-example-'))
    for (const [name, path] of Object.entries(made)) {
      const committed = readFileSync(join(EXAMPLE_DIR, name))
      expect(readFileSync(path).equals(committed), `${name} differs from templates/jobs/multiplier/${name}`).toBe(true)
    }
  })
})
