import {describe, expect, it} from 'vitest'

import {source, tracedImports} from '../support/import-trace.js'

describe('what `outpost doctor` loads', () => {
  it('loads no TPM tools, and no execa under them, unless [attestation] is on (it was 80 ms of every doctor run)', async () => {
    const loaded = await tracedImports(`await import(${source('src/setup/doctor.ts')})`)
    // The control: the trace sees doctor and its checks.
    expect(loaded).toContain('src/setup/doctor.ts')
    expect(loaded).toContain('src/setup/attestation-check.ts')
    for (const lazy of ['src/attest/', 'node_modules/execa/']) expect(loaded, lazy).not.toContain(lazy)
  })
})
