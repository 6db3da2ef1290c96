import {describe, expect, it} from 'vitest'

import {source, tracedImports} from '../support/import-trace.js'

describe('what `outpost run` loads', () => {
  it('the agent service and the local backend load no benchmark, TPM, job executor, execa or tweetnacl until configured or needed', async () => {
    const loaded = await tracedImports(`
      await import(${source('src/agent/service.ts')})
      await import(${source('src/provisioners/local/local-provisioner.ts')})
    `)
    // The control: the trace sees the service and what it needs.
    expect(loaded).toContain('src/agent/service.ts')
    expect(loaded).toContain('src/agent/agent.ts')
    for (const lazy of ['src/bench/', 'src/attest/', 'src/executors/index.ts', 'src/provisioners/script/', 'node_modules/execa/', 'node_modules/tweetnacl/']) expect(loaded, lazy).not.toContain(lazy)
  })
})
