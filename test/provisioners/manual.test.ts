import {mkdtempSync, rmSync} from 'node:fs'
import {createServer as createHttpServer, type IncomingMessage} from 'node:http'
import {createServer, type Server} from 'node:net'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import type {Contract} from '../../src/core/api/schemas.js'
import {UserError} from '../../src/core/errors.js'
import {ManualProvisioner} from '../../src/provisioners/manual/manual-provisioner.js'
import {ManualRequestStore} from '../../src/provisioners/manual/requests.js'
import {ProvisionAbortedError, ProvisionError, type ProvisionerLogger} from '../../src/provisioners/provisioner.js'
import {contractFixture, provisionerContractSuite} from './contract-suite.js'

const stateDir = mkdtempSync(join(tmpdir(), 'outpost-manual-'))
const store = new ManualRequestStore(stateDir)
const toFail = new Set<string>()
const notices: string[] = []
const logger: ProvisionerLogger = {info: (_details, message) => notices.push(message), warn: (_details, message) => notices.push(message)}
/** The "machine" the operator hands over: something that accepts TCP connections, as an SSH server would. */
let machine: Server
let machinePort = 0

beforeAll(async () => {
  machine = createServer((socket) => {
    // A health check hangs up as soon as it has connected.
    socket.on('error', () => {})
    socket.end('SSH-2.0-OpenSSH_9.2\r\n')
  })
  await new Promise<void>((resolve) => machine.listen(0, '127.0.0.1', resolve))
  machinePort = (machine.address() as AddressInfo).port
})

afterAll(async () => {
  await new Promise((resolve) => machine.close(resolve))
  rmSync(stateDir, {recursive: true, force: true})
})

const provisioner = (webhookUrl?: string) => new ManualProvisioner({stateDir, pollIntervalMs: 20, logger, ...(webhookUrl ? {webhookUrl} : {})})

/** The person at the keyboard: waits for the request, then answers it as `outpost contract complete|fail` does. */
async function operator(contract: Contract): Promise<void> {
  for (let waited = 0; store.read(contract.contract_id)?.status !== 'pending'; waited += 10) {
    if (waited > 5000) throw new Error('no request appeared')
    await sleep(10)
  }
  if (toFail.has(contract.contract_id)) store.fail(contract.contract_id, 'the rack is full', false)
  else store.complete(contract.contract_id, {external_id: `rack1-${contract.contract_id.slice(0, 6)}`, ip_address: '127.0.0.1', ssh_port: machinePort, credentials: {username: 'root', password: 'hunter22hunter22'}})
}

provisionerContractSuite('manual (an operator answers)', {
  create: () => provisioner(),
  operator,
  failProvision: (contract) => {
    toFail.add(contract.contract_id)
    return {retryPossible: false}
  },
  countInstances: () => store.all().filter((request) => request.status === 'completed').length,
})

describe('Manual provisioner', () => {
  it('waits for the operator as long as it takes, and tells them what to run', async () => {
    const contract = contractFixture()
    const made = provisioner()
    const waiting = made.provision(contract, new AbortController().signal)
    await sleep(300)
    expect(store.read(contract.contract_id)?.status).toBe('pending')
    expect(notices.at(-1)).toContain(`outpost contract complete ${contract.contract_id} --ip <address>`)
    await operator(contract)
    const instance = await waiting
    expect(instance).toMatchObject({ipAddress: '127.0.0.1', sshPort: machinePort, credentials: {username: 'root', password: 'hunter22hunter22'}})
    await made.terminate(instance)
    expect(notices.at(-1)).toContain(`tear down machine ${instance.externalId}`)
  })

  it('an abort leaves the request waiting; a restarted agent picks the answer up without asking again', async () => {
    const contract = contractFixture()
    const controller = new AbortController()
    const waiting = provisioner().provision(contract, controller.signal)
    await sleep(50)
    controller.abort()
    await expect(waiting).rejects.toBeInstanceOf(ProvisionAbortedError)
    const asked = notices.length
    await operator(contract)
    const instance = await provisioner().provision(contract, new AbortController().signal)
    expect(instance.ipAddress).toBe('127.0.0.1')
    expect(notices.length).toBe(asked)
    await provisioner().terminate(instance)
  })

  it('posts requests and terminations to the webhook; a failing webhook costs only a warning', async () => {
    const received: unknown[] = []
    const hook = createHttpServer(async (request: IncomingMessage, response) => {
      let body = ''
      for await (const chunk of request) body += String(chunk)
      received.push(JSON.parse(body))
      response.writeHead(204).end()
    })
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/outpost`
    try {
      const contract = contractFixture()
      const [instance] = await Promise.all([provisioner(url).provision(contract, new AbortController().signal), operator(contract)])
      await provisioner(url).terminate(instance)
      expect(received).toEqual([
        expect.objectContaining({event: 'provision_requested', contract_id: contract.contract_id, cpu_cores: 2, ssh_pubkey: contract.ssh_pubkey}),
        expect.objectContaining({event: 'terminate_requested', contract_id: contract.contract_id, external_id: instance.externalId}),
      ])
    } finally {
      await new Promise((resolve) => hook.close(resolve))
    }
    const contract = contractFixture()
    const [instance] = await Promise.all([provisioner(url).provision(contract, new AbortController().signal), operator(contract)])
    expect(notices).toContain('the manual webhook could not be notified')
    await provisioner().terminate(instance)
  })

  it('reports the operator failure with their reason and retry choice', async () => {
    const contract = contractFixture()
    const waiting = provisioner().provision(contract, new AbortController().signal)
    await sleep(50)
    store.fail(contract.contract_id, 'no GPU host free this week', true)
    const error = await waiting.catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ProvisionError)
    expect((error as ProvisionError).message).toBe(`the operator failed contract ${contract.contract_id}: no GPU host free this week`)
    expect((error as ProvisionError).retryPossible).toBe(true)
    expect(store.read(contract.contract_id)).toBeUndefined()
  })

  it('refuses answers to unknown or already answered requests', () => {
    const unknown = 'ab'.repeat(16)
    expect(() => store.complete(unknown, {external_id: 'x', ip_address: '192.0.2.1', ssh_port: 22})).toThrow(UserError)
    expect(() => store.fail('not-an-id', 'x', false)).toThrow(/not a contract id/)
    const contract = contractFixture()
    store.create(contract)
    store.fail(contract.contract_id, 'gone', false)
    expect(() => store.complete(contract.contract_id, {external_id: 'x', ip_address: '192.0.2.1', ssh_port: 22})).toThrow(/already answered \(failed\)/)
    store.remove(contract.contract_id)
  })
})
