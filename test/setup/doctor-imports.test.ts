import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {execa} from 'execa'
import {afterAll, describe, expect, it} from 'vitest'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'outpost-doctor-imports-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

describe('what `outpost doctor` loads', () => {
  it('loads no TPM tools, and no execa under them, unless [attestation] is on (it was 80 ms of every doctor run)', async () => {
    const trace = join(dir, 'imports.txt')
    const script = `await import(${JSON.stringify(join(REPO, 'src/setup/doctor.ts'))})`
    await execa('node', ['--import', 'tsx', '--import', join(REPO, 'test/fixtures/trace-imports.mjs'), '--input-type=module', '-e', script], {env: {OUTPOST_TRACE_IMPORTS: trace}})
    const loaded = readFileSync(trace, 'utf8')
    // The control: the trace sees doctor and its checks.
    expect(loaded).toContain('src/setup/doctor.ts')
    expect(loaded).toContain('src/setup/attestation-check.ts')
    for (const lazy of ['src/attest/', 'node_modules/execa/']) expect(loaded, lazy).not.toContain(lazy)
  })
})
