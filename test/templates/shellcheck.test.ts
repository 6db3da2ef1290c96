import {readdirSync, readFileSync, statSync} from 'node:fs'
import {join, relative} from 'node:path'
import {execa} from 'execa'
import {describe, expect, it} from 'vitest'

import {REPO_ROOT} from '../support/cli.js'

/** Every shell script Outpost ships (templates/, in the npm package), its CI script and the GPU check, read by shellcheck. */

function shellScripts(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) return shellScripts(path)
    const firstLine = readFileSync(path, 'latin1').split('\n', 1)[0] ?? ''
    return entry.endsWith('.sh') || /^#!.*\b(ba|da)?sh\b/.test(firstLine) ? [path] : []
  })
}

async function shellcheck(args: string[], input?: string): Promise<{exitCode: number; output: string}> {
  const result = await execa('shellcheck', args, {input, reject: false, cwd: REPO_ROOT})
  return {exitCode: result.exitCode ?? -1, output: `${String(result.stdout)}${String(result.stderr)}`}
}

describe('shell scripts', () => {
  it('are shellcheck-clean, every one of them', async () => {
    const scripts = [...shellScripts(join(REPO_ROOT, 'templates')), join(REPO_ROOT, '.ci', 'run'), join(REPO_ROOT, 'scripts', 'gpu-check.sh')].map((path) => relative(REPO_ROOT, path)).sort()
    expect(scripts).toEqual(expect.arrayContaining(['.ci/run', 'templates/install.sh', 'templates/scripts/provisioner-example.sh', 'templates/slurm/outpost-job.sh']))
    const checked = await shellcheck(['--format=gcc', ...scripts])
    expect(checked.output).toBe('')
    expect(checked.exitCode).toBe(0)
  })

  it('shellcheck does report a non-constant source (so the check above means something)', async () => {
    const checked = await shellcheck(['--format=gcc', '-'], '#!/bin/sh\nrelease=/etc/os-release\n. "$release"\n')
    expect(checked.exitCode).not.toBe(0)
    expect(checked.output).toContain('SC1090')
  })
})
