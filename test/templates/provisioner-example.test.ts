import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, describe, expect, it} from 'vitest'

const SCRIPT = fileURLToPath(new URL('../../templates/scripts/provisioner-example.sh', import.meta.url))
const root = mkdtempSync(join(tmpdir(), 'outpost-example-script-'))
afterAll(() => rmSync(root, {recursive: true, force: true}))

const CONTRACT_ID = '0123456789abcdef0123456789abcdef'
const NAME = `outpost-${CONTRACT_ID}`

/** Runs the example as the script provisioner does: `bash <script> <action>`, one JSON request on stdin. */
function run(stateDir: string, action: string, request: unknown): {status: number | null; stdout: string; stderr: string} {
  const result = spawnSync('bash', [SCRIPT, action], {input: JSON.stringify(request), env: {...process.env, EXAMPLE_STATE_DIR: stateDir}, encoding: 'utf8'})
  if (result.error) throw result.error
  return {status: result.status, stdout: result.stdout, stderr: result.stderr}
}

function contract(id = CONTRACT_ID) {
  return {contract_id: id, cpu_cores: 2, memory_mb: 2048, ssh_pubkey: 'ssh-ed25519 AAAATEST renter'}
}

describe('templates/scripts/provisioner-example.sh (run with bash and jq)', () => {
  it('needs jq, which CI installs', () => {
    expect(spawnSync('jq', ['--version']).status).toBe(0)
  })

  it("keeps a renter's password readable only by its owner, whatever the caller's umask", () => {
    const stateDir = join(root, 'private', 'state')
    const previous = process.umask(0o022)
    try {
      const made = run(stateDir, 'provision', {instance_name: NAME, contract: contract()})
      expect(made.status, made.stderr).toBe(0)
      expect(JSON.parse(made.stdout)).toMatchObject({external_id: NAME, credentials: {username: 'root', password: expect.any(String)}})
    } finally {
      process.umask(previous)
    }
    expect(statSync(join(stateDir, `${NAME}.json`)).mode & 0o777).toBe(0o600)
    expect(statSync(stateDir).mode & 0o777).toBe(0o700)
    expect(run(stateDir, 'terminate', {external_id: NAME}).stdout).toContain('"terminated": true')
    expect(readdirSync(stateDir)).toEqual([])
  })

  const HOSTILE = ['../victim', `${NAME}/../../victim`, `../${NAME}`, `${NAME}\n../victim`, '/tmp/victim', '', 'outpost-ABCDEF0123456789abcdef0123456789']

  it.each(HOSTILE.map((id) => [JSON.stringify(id), id]))('refuses the id %s in every action, touching nothing outside its state dir', (_shown, id) => {
    const dir = mkdtempSync(join(root, 'traversal-'))
    const stateDir = join(dir, 'state')
    mkdirSync(stateDir)
    writeFileSync(join(dir, 'victim.json'), '{"keep": true}')
    for (const [action, request] of [
      ['terminate', {external_id: id}],
      ['health', {external_id: id}],
      ['provision', {instance_name: id, contract: contract()}],
      ['find', {instance_name: id, contract_id: CONTRACT_ID}],
    ] as const) {
      const result = run(stateDir, action, request)
      expect(result.status, `${action}: ${result.stderr}`).toBe(65)
      expect(JSON.parse(result.stdout)).toEqual({error: 'not an instance id of this backend', retry_possible: false})
    }
    expect(existsSync(join(dir, 'victim.json'))).toBe(true)
    expect(readdirSync(stateDir)).toEqual([])
    expect(readdirSync(dir).sort()).toEqual(['state', 'victim.json'])
  })
})
