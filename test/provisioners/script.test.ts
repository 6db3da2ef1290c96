import {execFileSync} from 'node:child_process'
import {chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, describe, expect, it} from 'vitest'

import {ScriptProvisioner} from '../../src/provisioners/script/script-provisioner.js'
import {failure} from '../support/provisioners.js'
import {contractFixture, provisionerContractSuite} from './contract-suite.js'

const backendDir = mkdtempSync(join(tmpdir(), 'outpost-script-'))
process.env.FAKE_BACKEND_DIR = backendDir
const command = join(backendDir, 'provision.mjs')
copyFileSync(fileURLToPath(new URL('fixtures/script-backend.mjs', import.meta.url)), command)
chmodSync(command, 0o755)

const provisioner = (overrides: Partial<ConstructorParameters<typeof ScriptProvisioner>[0]> = {}) =>
  new ScriptProvisioner({command, provisionTimeoutMs: 10_000, actionTimeoutMs: 5000, ...overrides})
const count = () => (existsSync(join(backendDir, 'instances')) ? readdirSync(join(backendDir, 'instances')).length : 0)
const signal = () => new AbortController().signal

/** A process's state letter from /proc (Z: a zombie, dead but not yet reaped by its new parent), or "gone". */
function processState(pid: number): string {
  try {
    return /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1] ?? 'gone'
  } catch {
    return 'gone'
  }
}

afterAll(() => rmSync(backendDir, {recursive: true, force: true}))

provisionerContractSuite('script (an operator executable)', {
  create: () => provisioner(),
  failProvision: (contract) => {
    writeFileSync(join(backendDir, `fail-${contract.contract_id}`), '')
    return {retryPossible: false}
  },
  countInstances: count,
})

describe('Script provisioner', () => {
  it('passes the contract on stdin and returns the credentials the script made', async () => {
    const contract = contractFixture()
    const instance = await provisioner().provision(contract, signal())
    expect(instance).toMatchObject({contractId: contract.contract_id, ipAddress: '127.0.0.1', sshPort: 2222, credentials: {username: 'root'}})
    expect(JSON.parse(readFileSync(join(backendDir, 'instances', `${instance.externalId}.json`), 'utf8'))).toMatchObject({name: `outpost-${contract.contract_id}`})
    await provisioner().terminate(instance)
  })

  it("puts the script's error and the end of its stderr in the failure", async () => {
    const contract = contractFixture()
    writeFileSync(join(backendDir, `fail-${contract.contract_id}`), '')
    const error = await failure(provisioner().provision(contract, signal()))
    expect(error.message).toContain(`script ${command} provision failed: no capacity left on rack 3`)
    expect(error.message).toContain('rack 3: all hosts busy')
    expect(error.retryPossible).toBe(false)
  })

  it('names the script and what was wrong when the output is not JSON', async () => {
    const contract = contractFixture()
    writeFileSync(join(backendDir, `garbage-${contract.contract_id}`), '')
    const error = await failure(provisioner().provision(contract, signal()))
    expect(error.message).toBe(`script ${command} provision printed "Provisioning... done!" where one JSON object was expected`)
  })

  it('names the field when the output has the wrong shape', async () => {
    const contract = contractFixture()
    writeFileSync(join(backendDir, `badshape-${contract.contract_id}`), '')
    const error = await failure(provisioner().provision(contract, signal()))
    expect(error.message).toMatch(new RegExp(`script ${command} provision printed an answer that does not fit: ssh_port: .*number`))
  })

  it('kills the whole process group on a timeout', async () => {
    const contract = contractFixture()
    writeFileSync(join(backendDir, `slow-${contract.contract_id}`), '')
    const started = Date.now()
    const error = await failure(provisioner({provisionTimeoutMs: 800}).provision(contract, signal()))
    expect(error.message).toContain('provision timed out after 1 s and was killed')
    expect(error.retryPossible).toBe(true)
    expect(Date.now() - started).toBeLessThan(4000)
    const grandchild = Number(readFileSync(join(backendDir, `slow-${contract.contract_id}.pid`), 'utf8'))
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(processState(grandchild)).toMatch(/^(gone|Z)$/)
  })

  it('checks the setup: executable, and the script own checks; agent secrets stay out of its environment', async () => {
    process.env.OUTPOST_PROVISIONER_PROXMOX_TOKEN_SECRET = 'must-not-leak'
    try {
      const checks = await provisioner().verifySetup()
      expect(checks).toEqual([
        {name: 'provisioner script', ok: true, message: `${command} is executable`},
        expect.objectContaining({name: 'script: agent secrets hidden', ok: true}),
      ])
    } finally {
      delete process.env.OUTPOST_PROVISIONER_PROXMOX_TOKEN_SECRET
    }
    const missing = await new ScriptProvisioner({command: join(backendDir, 'nope.sh'), provisionTimeoutMs: 1000, actionTimeoutMs: 1000}).verifySetup()
    expect(missing[0]).toMatchObject({name: 'provisioner script', ok: false})
    const error = await failure(new ScriptProvisioner({command: join(backendDir, 'nope.sh'), provisionTimeoutMs: 1000, actionTimeoutMs: 1000}).list())
    expect(error.message).toContain('could not run: no such file')
  })

  it('reads capacity', async () => {
    expect(await provisioner().capacity()).toEqual({cpuCores: 8, memoryMb: 16_384, storageGb: 500, gpuCount: 0})
  })
})

const hasJq = (() => {
  try {
    execFileSync('jq', ['--version'], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
})()

describe.runIf(hasJq)('the example script in templates/scripts', () => {
  it('answers every action in the shapes the provisioner parses', async () => {
    process.env.EXAMPLE_STATE_DIR = join(backendDir, 'example')
    const example = provisioner({command: fileURLToPath(new URL('../../templates/scripts/provisioner-example.sh', import.meta.url))})
    const contract = contractFixture()
    const instance = await example.provision(contract, signal())
    expect(instance).toMatchObject({externalId: `outpost-${contract.contract_id}`, sshPort: 22, credentials: {username: 'root'}})
    expect((await example.provision(contract, signal())).externalId).toBe(instance.externalId)
    expect((await example.find(contract.contract_id))?.externalId).toBe(instance.externalId)
    expect(await example.list()).toEqual([{externalId: instance.externalId, name: instance.externalId, contractId: contract.contract_id}])
    expect((await example.health(instance)).status).toBe('healthy')
    expect(await example.capacity()).toBeUndefined()
    expect((await example.verifySetup()).every((check) => check.ok)).toBe(true)
    await example.terminate(instance)
    expect(await example.find(contract.contract_id)).toBeUndefined()
  })
})
