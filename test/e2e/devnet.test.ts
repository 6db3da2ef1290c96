import {existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {readKeyFile} from '../../src/core/keys.js'
import {sealCredentials} from '../../src/core/sealing.js'
import {parseJson, runCli, tempConfigDir} from '../support/cli.js'
import {RENTER_SSH_KEY} from '../support/ssh-keys.js'
import {OFFERING, registerProvider, send, type Provider} from '../support/harness.js'
import {startDevnet, type Devnet} from '../support/devnet.js'

interface ContractJson {
  contract_id: string
  status: string
  requester_pubkey: string
  termination_pending?: boolean
  credentials?: unknown
  connect?: {protocol: string; command: string; note: string}
}

interface ErrorJson {
  error: {code: string; message: string; suggestion?: string}
}

let dataDir: string
let devnet: Devnet
let provider: Provider
let offeringId: string

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'outpost-devnet-e2e-'))
  devnet = await startDevnet({dataDir: join(dataDir, 'devnet'), process: true})
  // The provider side, as an agent would do it: signed API calls.
  provider = await registerProvider(devnet)
  const offering = await send<{offering_id: string}>(devnet, 'POST', `/providers/${provider.pk}/offerings`, {key: provider.main, body: OFFERING})
  offeringId = offering.body.offering_id
})
afterAll(() => {
  devnet.child.kill('SIGKILL')
  rmSync(dataDir, {recursive: true, force: true})
})

const renter = (args: string[]) => runCli(['devnet', ...args, '--endpoint', devnet.endpoint, '--data-dir', join(dataDir, 'devnet'), '--json'])

describe('outpost devnet (built CLI)', () => {
  it('a renter lists offerings, rents, reads sealed credentials, disputes and cancels', async () => {
    const offerings = parseJson<{offerings: {offering_id: string}[]}>(await runCli(['devnet', 'offerings', '--endpoint', devnet.endpoint, '--json']))
    expect(offerings.offerings.map((offering) => offering.offering_id)).toEqual([offeringId])

    const created = await renter(['contract', 'create', '--offering', offeringId, '--ssh-pubkey', RENTER_SSH_KEY, '--duration-hours', '3'])
    expect(created.exitCode, created.stderr).toBe(0)
    const contract = parseJson<ContractJson>(created)
    expect(contract.status).toBe('accepted')
    const keyFile = join(dataDir, 'devnet', 'renter.key')
    expect(statSync(keyFile).mode & 0o777).toBe(0o600)
    const renterKey = await readKeyFile(keyFile)
    expect(contract.requester_pubkey).toBe(Buffer.from(renterKey.publicKey).toString('hex'))

    // The agent provisions it and seals the credentials to the renter's key.
    const path = `/providers/${provider.pk}/contracts/${contract.contract_id}/provisioning`
    expect((await send(devnet, 'PUT', path, {key: provider.agent, body: {status: 'provisioning'}})).status).toBe(200)
    const sealed = sealCredentials({username: 'root', password: 'hunter2'}, renterKey.publicKey)
    const instance = {external_id: 'ct-7', ip_address: '127.0.0.1', ssh_port: 2222, sealed_credentials: sealed}
    expect((await send(devnet, 'PUT', path, {key: provider.agent, body: {status: 'provisioned', instance}})).status).toBe(200)

    const shown = parseJson<ContractJson & {instance: {sealed_credentials: string}}>(await renter(['contract', 'show', contract.contract_id]))
    expect(shown).toMatchObject({status: 'provisioned', instance: {ip_address: '127.0.0.1', ssh_port: 2222}, connect: {protocol: 'ssh', command: 'ssh -p 2222 <user>@127.0.0.1'}})
    expect(shown.credentials).toBeUndefined()
    const decrypted = parseJson<ContractJson>(await renter(['contract', 'show', contract.contract_id, '--decrypt']))
    expect(decrypted.credentials).toEqual({username: 'root', password: 'hunter2'})
    expect(decrypted.connect).toMatchObject({protocol: 'ssh', command: 'ssh -p 2222 root@127.0.0.1'})
    const human = await runCli(['devnet', 'contract', 'show', contract.contract_id, '--decrypt', '--endpoint', devnet.endpoint, '--data-dir', join(dataDir, 'devnet')])
    expect(human.stdout).toContain('  connect: ssh -p 2222 root@127.0.0.1  (with the SSH key you rented it with, or the password above)')

    const dispute = parseJson<{status: string; type: string}>(await renter(['dispute', 'open', contract.contract_id, '--type', 'sla_violation', '--description', 'ssh refused']))
    expect(dispute).toMatchObject({status: 'open', type: 'sla_violation'})

    const cancelled = parseJson<ContractJson>(await renter(['contract', 'cancel', contract.contract_id]))
    expect(cancelled).toMatchObject({status: 'cancelled', termination_pending: true})
    const again = await renter(['contract', 'cancel', contract.contract_id])
    expect(again.exitCode).toBe(1)
    expect(parseJson(again)).toMatchObject({error: {code: 'invalid_transition'}})
  })

  it('names the failure when the contract does not exist or the devnet is not running', async () => {
    const missing = await renter(['contract', 'show', '0'.repeat(32)])
    expect(missing.exitCode).toBe(1)
    expect(parseJson(missing)).toMatchObject({error: {code: 'not_found'}})
    const nowhere = await runCli(['devnet', 'contract', 'show', '0'.repeat(32), '--endpoint', 'http://127.0.0.1:9', '--data-dir', join(dataDir, 'devnet'), '--json'])
    expect(nowhere.exitCode).toBe(5)
    expect(parseJson(nowhere)).toMatchObject({error: {code: 'unreachable'}})
  })

  it('the renter commands use the devnet just started: no --endpoint, no --data-dir, and the printed follow-up works', async () => {
    const configDir = tempConfigDir('outpost-devnet-config-')
    const ownData = join(dataDir, 'recorded')
    const own = await startDevnet({dataDir: ownData, process: {args: [], configDir: configDir}})
    try {
      const owner = await registerProvider(own)
      const offering = await send<{offering_id: string}>(own, 'POST', `/providers/${owner.pk}/offerings`, {key: owner.main, body: OFFERING})
      expect(JSON.parse(readFileSync(join(configDir, 'devnet.json'), 'utf8'))).toMatchObject({endpoint: own.endpoint, data_dir: ownData, pid: own.child.pid})
      expect(JSON.parse(readFileSync(join(ownData, 'endpoint.json'), 'utf8'))).toMatchObject({endpoint: own.endpoint, data_dir: ownData})
      const env = {OUTPOST_CONFIG_DIR: configDir}
      const listed = parseJson<{offerings: {offering_id: string}[]}>(await runCli(['devnet', 'offerings', '--json'], {env}))
      expect(listed.offerings.map((item) => item.offering_id)).toEqual([offering.body.offering_id])

      const created = await runCli(['devnet', 'contract', 'create', '--offering', offering.body.offering_id, '--ssh-pubkey', RENTER_SSH_KEY], {env})
      expect(created.exitCode, created.stderr).toBe(0)
      // The renter key lives with the devnet's data, not in a default place of its own.
      expect(existsSync(join(ownData, 'renter.key'))).toBe(true)
      const followUp = /follow it with: outpost (.+)$/m.exec(created.stdout)?.[1]
      expect(followUp).toMatch(/^devnet contract show [0-9a-f]{32} --decrypt$/)
      const shown = await runCli(followUp?.split(' ') ?? [], {env})
      expect(shown.exitCode, shown.stderr).toBe(0)
      expect(shown.stdout).toMatch(/contract [0-9a-f]{32}: accepted/)
      expect(shown.stdout).toContain("no machine yet: the provider's agent is on it")
    } finally {
      own.child.kill('SIGTERM')
      await own.exited
    }
    // Stopped: the well-known record is gone; the data dir's says where it was, and the error says how to start it again.
    expect(existsSync(join(configDir, 'devnet.json'))).toBe(false)
    const stopped = await runCli(['devnet', 'offerings', '--data-dir', ownData, '--json'], {env: {OUTPOST_CONFIG_DIR: configDir}})
    expect(stopped.exitCode).toBe(5)
    expect(parseJson<ErrorJson>(stopped).error).toMatchObject({
      message: expect.stringMatching(/^cannot reach the devnet at http:\/\/127\.0\.0\.1:\d+$/),
      suggestion: `the devnet recorded in ${ownData} (pid ${own.child.pid}) has stopped: start it again with \`outpost devnet start --data-dir ${ownData}\``,
    })
  })

  it('--ssh-pubkey takes a key or its file (~/ expanded), and refuses anything that is no SSH public key', async () => {
    const home = tempConfigDir('outpost-devnet-home-')
    writeFileSync(join(home, 'laptop.pub'), `${RENTER_SSH_KEY}\n`)
    writeFileSync(join(home, 'laptop'), '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n')
    const env = {HOME: home}
    const fromFile = await runCli(['devnet', 'contract', 'create', '--offering', offeringId, '--ssh-pubkey=~/laptop.pub', '--endpoint', devnet.endpoint, '--data-dir', join(dataDir, 'devnet'), '--json'], {env})
    expect(fromFile.exitCode, fromFile.stdout).toBe(0)
    expect(parseJson<{ssh_pubkey: string}>(fromFile).ssh_pubkey).toBe(RENTER_SSH_KEY)
    const cases: [string, string][] = [
      ['~/laptop', '--ssh-pubkey: that is a private key: give the public one (the .pub file)'],
      ['hello', '--ssh-pubkey hello: neither a public key nor a file'],
      ['ssh-ed25519 AAAAC3 renter@laptop', '--ssh-pubkey: the key data is not a ssh-ed25519 key'],
    ]
    for (const [value, message] of cases) {
      const refused = await runCli(['devnet', 'contract', 'create', '--offering', offeringId, `--ssh-pubkey=${value}`, '--endpoint', devnet.endpoint, '--json'], {env})
      expect(refused.exitCode, value).toBe(2)
      expect(parseJson<ErrorJson>(refused).error).toMatchObject({code: 'invalid_ssh_key', message})
    }
  })

  it('an endpoint ending in /api/v1, or a server that is no marketplace, is named as such', async () => {
    const suffixed = await runCli(['devnet', 'offerings', '--endpoint', `${devnet.endpoint}/api/v1`, '--json'])
    expect(suffixed.exitCode).toBe(2)
    expect(parseJson<ErrorJson>(suffixed).error).toMatchObject({message: expect.stringContaining('ends in /api/v1'), suggestion: `pass --endpoint ${devnet.endpoint}`})
    const other = createServer((_request, response) => response.writeHead(404, {'content-type': 'text/plain'}).end('nothing here'))
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve))
    try {
      const endpoint = `http://127.0.0.1:${(other.address() as AddressInfo).port}`
      const result = await runCli(['devnet', 'offerings', '--endpoint', endpoint, '--json'])
      expect(result.exitCode).toBe(1)
      expect(parseJson<ErrorJson>(result).error).toMatchObject({code: 'not_a_marketplace', message: `${endpoint} is not an Outpost marketplace API: GET /api/v1/offerings answered 404, not JSON`})
    } finally {
      other.close()
    }
  })

  it('start refuses a bad --unbonding-period, and stops cleanly on SIGTERM', async () => {
    const bad = await runCli(['devnet', 'start', '--port', '0', '--data-dir', join(dataDir, 'other'), '--unbonding-period', 'a week', '--json'])
    expect(bad.exitCode).toBe(2)
    expect(parseJson(bad)).toMatchObject({error: {code: 'invalid_duration'}})

    const own = await startDevnet({dataDir: join(dataDir, 'short'), process: {args: ['--unbonding-period', '30s']}})
    const staker = await registerProvider(own)
    await send(own, 'POST', `/providers/${staker.pk}/stake`, {key: staker.main, body: {amount: '10'}})
    const unstaked = await send<{unbonding: {release_at: number}[]}>(own, 'POST', `/providers/${staker.pk}/unstake`, {key: staker.main, body: {amount: '10'}})
    expect((unstaked.body.unbonding[0]?.release_at ?? 0) - Date.now()).toBeLessThanOrEqual(30_000)
    const started = Date.now()
    own.child.kill('SIGTERM')
    expect(await own.exited).toEqual({code: 0, signal: null})
    expect(Date.now() - started).toBeLessThan(5000)
  })
})
