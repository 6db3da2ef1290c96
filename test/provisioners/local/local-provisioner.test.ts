import {mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {createConnection} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {LocalProvisioner, BANNER_SERVICE} from '../../../src/provisioners/local/local-provisioner.js'
import {instanceName, ProvisionError} from '../../../src/provisioners/provisioner.js'
import {contractFixture, provisionerContractSuite} from '../contract-suite.js'

/** Every workload these tests start carries this tag in its environment, so they can be counted in /proc and nothing else. */
const TAG = `LOCAL_SUITE_${process.pid}_${Date.now()}`
process.env[TAG] = '1'
const stateDir = mkdtempSync(join(tmpdir(), 'outpost-local-'))
const failing = join(stateDir, 'fail-contracts')
writeFileSync(failing, '')

/** The banner service, except for contracts listed in `failing`: those exit at once, as a broken workload would. */
const command = ['/bin/sh', '-c', `grep -qx "$OUTPOST_CONTRACT_ID" ${failing} && { echo "boom: bad image" >&2; exit 3; }; exec ${process.execPath} ${BANNER_SERVICE}`]

function taggedProcesses(): number[] {
  const found: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'latin1').includes(`${TAG}=1\0`)) found.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return found
}

afterAll(() => {
  for (const pid of taggedProcesses()) process.kill(pid, 'SIGKILL')
  rmSync(stateDir, {recursive: true, force: true})
})

provisionerContractSuite('local', {
  create: () => new LocalProvisioner({stateDir, command, startupTimeoutMs: 5000, killGraceMs: 1000}),
  failProvision: (contract) => {
    writeFileSync(failing, contract.contract_id + '\n', {flag: 'a'})
    return {retryPossible: true}
  },
  countInstances: () => taggedProcesses().length,
})

function banner(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({host: '127.0.0.1', port})
    socket.setEncoding('utf8')
    socket.once('data', (chunk: string) => {
      socket.destroy()
      resolve(chunk)
    })
    socket.once('error', reject)
  })
}

describe('LocalProvisioner', () => {
  const provisioner = new LocalProvisioner({stateDir, startupTimeoutMs: 5000, killGraceMs: 1000})

  it('runs the built-in banner service on 127.0.0.1 and returns a random password, kept in a 0600 record', async () => {
    const contract = contractFixture()
    const instance = await provisioner.provision(contract, AbortSignal.timeout(10_000))
    expect(instance).toMatchObject({externalId: instanceName(contract.contract_id), ipAddress: '127.0.0.1'})
    expect(instance.credentials?.password).toMatch(/^[\w-]{24}$/)
    expect(await banner(instance.sshPort)).toBe(`${instance.externalId} ready\n`)
    const record = join(provisioner.dir, `${instance.externalId}.json`)
    expect(readdirSync(provisioner.dir)).toContain(`${instance.externalId}.json`)
    expect(statSync(record).mode & 0o777).toBe(0o600)
    await provisioner.terminate(instance)
  })

  it('keeps agent secrets out of the workload environment', async () => {
    process.env.OUTPOST_KEY_PASSPHRASE = 'never-inherit-this'
    try {
      const instance = await provisioner.provision(contractFixture(), AbortSignal.timeout(10_000))
      const pid = instance.details?.pid as number
      const environ = readFileSync(`/proc/${pid}/environ`, 'latin1')
      expect(environ).not.toContain('never-inherit-this')
      expect(environ).toContain(`PORT=${instance.sshPort}\0`)
      await provisioner.terminate(instance)
    } finally {
      delete process.env.OUTPOST_KEY_PASSPHRASE
    }
  })

  it('restarts a workload that died, on the same port, and reports it unhealthy for that check', async () => {
    const instance = await provisioner.provision(contractFixture(), AbortSignal.timeout(10_000))
    process.kill(-(instance.details?.pid as number), 'SIGKILL')
    await new Promise((resolve) => setTimeout(resolve, 100))
    const check = await provisioner.health(instance)
    expect(check.status).toBe('unhealthy')
    expect(check.details?.reason).toMatch(/restarted/)
    expect((await provisioner.health(instance)).status).toBe('healthy')
    const again = await provisioner.find(instance.contractId)
    expect(again?.sshPort).toBe(instance.sshPort)
    expect(again?.credentials?.password).toBe(instance.credentials?.password)
    await provisioner.terminate(instance)
  })

  it('kills a workload that never became ready at once, even one deaf to SIGTERM, so no later run adopts one about to die', {timeout: 20_000}, async () => {
    // A 10-minute grace would hold the provision for 10 minutes if it were granted to a workload that never started.
    const deaf = new LocalProvisioner({stateDir, command: ['/bin/sh', '-c', 'trap "" TERM; exec sleep 600'], startupTimeoutMs: 300, killGraceMs: 600_000})
    const contract = contractFixture()
    const error = await deaf.provision(contract, AbortSignal.timeout(15_000)).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ProvisionError)
    expect((error as ProvisionError).retryPossible).toBe(true)
    expect(await deaf.find(contract.contract_id)).toBeUndefined()
  })

  it('refuses contract ids that would make a path of its own', async () => {
    await expect(provisioner.terminate({contractId: '../../etc/passwd'})).rejects.toBeInstanceOf(ProvisionError)
    await expect(provisioner.health({contractId: '../../etc/passwd'})).rejects.toBeInstanceOf(ProvisionError)
  })

  it('fails without retry when the command cannot start', async () => {
    const broken = new LocalProvisioner({stateDir, command: ['/nonexistent/workload'], startupTimeoutMs: 2000})
    const error = await broken.provision(contractFixture(), AbortSignal.timeout(5000)).catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ProvisionError)
    expect((error as ProvisionError).retryPossible).toBe(false)
    expect((await broken.verifySetup()).find((check) => check.name === 'workload command')?.ok).toBe(false)
  })

  it('reports its capacity and a passing setup', async () => {
    expect((await provisioner.capacity()).cpuCores).toBeGreaterThan(0)
    expect((await provisioner.verifySetup()).every((check) => check.ok)).toBe(true)
  })
})
