import {createReadStream, mkdirSync, mkdtempSync, readFileSync, statSync} from 'node:fs'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
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

let prebuildHost: Server | undefined

afterAll(async () => {
  if (isRoot) await execa('userdel', [user], {reject: false})
  prebuildHost?.close()
})

/**
 * On a provider's machine better-sqlite3's install downloads its prebuilt binary from GitHub; this machine reaches only
 * the npm registry, where it would compile SQLite from source for minutes instead. So the test serves the binary this
 * checkout built, in prebuild-install's own tarball layout, from a mirror on loopback (prebuild-install's documented
 * `npm_config_<package>_binary_host`): the install still runs every step a user's does.
 */
async function servePrebuiltSqlite(work: string): Promise<Record<string, string>> {
  const module = join(REPO_ROOT, 'node_modules', 'better-sqlite3')
  const {version} = JSON.parse(readFileSync(join(module, 'package.json'), 'utf8')) as {version: string}
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`
  const dir = join(work, 'prebuilds')
  mkdirSync(dir)
  await execa('tar', ['-czf', join(dir, name), '-C', module, 'build/Release/better_sqlite3.node'])
  const wanted = `/v${version}/${name}`
  prebuildHost = createServer((request, response) => {
    if (request.url !== wanted) return response.writeHead(404).end()
    response.writeHead(200, {'content-type': 'application/gzip'})
    createReadStream(join(dir, name)).pipe(response)
  })
  await new Promise<void>((resolve) => prebuildHost!.listen(0, '127.0.0.1', resolve))
  return {npm_config_better_sqlite3_binary_host: `http://127.0.0.1:${(prebuildHost.address() as AddressInfo).port}`}
}

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
    const env = {OUTPOST_PACKAGE: join(work, filename), OUTPOST_HOME: home, ...(await servePrebuiltSqlite(work))}

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
