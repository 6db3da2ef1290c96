import {mkdtempSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {execa} from 'execa'
import {afterAll, describe, expect, it} from 'vitest'

import {REPO_ROOT} from '../support/cli.js'

const INSTALLER = join(REPO_ROOT, 'templates', 'install.sh')
const isRoot = process.getuid?.() === 0
const user = `outpost-ci-${process.pid}`

async function installer(args: string[], env: Record<string, string>) {
  return execa('bash', [INSTALLER, ...args], {env: {...env, CI: 'true'}, reject: false, input: '', timeout: 600_000})
}

afterAll(async () => {
  if (isRoot) await execa('userdel', [user], {reject: false})
})

describe('install.sh', () => {
  it('refuses an unsupported OS clearly', async () => {
    const result = await installer(['--unattended'], {OUTPOST_KERNEL: 'Darwin'})
    expect(result.exitCode).toBe(1)
    expect(String(result.stderr)).toContain('unsupported OS: Darwin')
  })

  it('refuses unknown options', async () => {
    const result = await installer(['--frobnicate'], {})
    expect(result.exitCode).toBe(1)
    expect(String(result.stderr)).toContain('unknown option --frobnicate')
  })

  it('installs the npm pack tarball into a prefix, creates the system user, and is idempotent', {timeout: 900_000}, async () => {
    const work = mkdtempSync(join(tmpdir(), 'outpost-install-'))
    const packed = await execa('npm', ['pack', '--json', '--pack-destination', work], {cwd: REPO_ROOT})
    const [{filename}] = JSON.parse(String(packed.stdout)) as [{filename: string}]
    const prefix = join(work, 'prefix')
    const home = join(work, 'home')
    const args = ['--unattended', '--prefix', prefix, ...(isRoot ? ['--user', user] : ['--no-system-user'])]
    const env = {OUTPOST_PACKAGE: join(work, filename), OUTPOST_HOME: home}

    const first = await installer(args, env)
    expect(first.exitCode, String(first.stderr)).toBe(0)
    expect(String(first.stdout)).toMatch(/✓ outpost-cli\/\d+\.\d+\.\d+ .* in /)
    const version = await execa(join(prefix, 'bin', 'outpost'), ['--version'])
    expect(String(version.stdout)).toMatch(/^outpost-cli\//)
    const help = await execa(join(prefix, 'bin', 'outpost'), ['doctor', '--help'])
    expect(String(help.stdout)).toContain('--verify-api')
    if (isRoot) {
      const {stdout: uid} = await execa('id', ['-u', user])
      expect(statSync(home).uid).toBe(Number(uid))
      expect(statSync(home).mode & 0o777).toBe(0o750)
    }

    const second = await installer(args, env)
    expect(second.exitCode, String(second.stderr)).toBe(0)
    expect(String(second.stdout)).toContain('is already installed')
    if (isRoot) expect(String(second.stdout)).toContain(`✓ user ${user} exists`)
  })
})
