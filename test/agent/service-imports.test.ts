import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {execa} from 'execa'
import {afterAll, describe, expect, it} from 'vitest'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'outpost-service-imports-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

describe('what `outpost run` loads', () => {
  it('the agent service and the local backend load no benchmark, TPM, job executor or execa until configured', async () => {
    const trace = join(dir, 'imports.txt')
    const script = `
      await import(${JSON.stringify(join(REPO, 'src/agent/service.ts'))})
      await import(${JSON.stringify(join(REPO, 'src/provisioners/local/local-provisioner.ts'))})
    `
    await execa('node', ['--import', 'tsx', '--import', join(REPO, 'test/fixtures/trace-imports.mjs'), '--input-type=module', '-e', script], {env: {OUTPOST_TRACE_IMPORTS: trace}})
    const loaded = readFileSync(trace, 'utf8')
    // The control: the trace sees the service and what it needs.
    expect(loaded).toContain('src/agent/service.ts')
    expect(loaded).toContain('src/agent/agent.ts')
    for (const lazy of ['src/bench/', 'src/attest/', 'src/executors/index.ts', 'src/provisioners/script/', 'node_modules/execa/']) expect(loaded, lazy).not.toContain(lazy)
  })
})
