import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {execa} from 'execa'

import {REPO_ROOT} from './cli.js'

/** A source file of this repository, quoted for an `import()` in a traced script. */
export function source(path: string): string {
  return JSON.stringify(join(REPO_ROOT, path))
}

/** The module URLs a fresh Node process resolves (sources through tsx) while it runs `script`, an ES module body. */
export async function tracedImports(script: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-imports-'))
  try {
    const trace = join(dir, 'imports.txt')
    await execa('node', ['--import', 'tsx', '--import', join(REPO_ROOT, 'test/fixtures/trace-imports.mjs'), '--input-type=module', '-e', script], {env: {OUTPOST_TRACE_IMPORTS: trace}})
    return readFileSync(trace, 'utf8')
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}
