import {mkdtempSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {readKeyFile} from '../../src/core/keys.js'
import {sealCredentials} from '../../src/core/sealing.js'
import {parseJson, runCli} from '../helpers/cli.js'
import {startDevnetProcess, type DevnetProcess} from '../marketplace/devnet-process.js'
import {OFFERING, registerProvider, send, type Provider} from '../marketplace/harness.js'

interface ContractJson {
  contract_id: string
  status: string
  requester_pubkey: string
  termination_pending?: boolean
  credentials?: unknown
}

let dataDir: string
let devnet: DevnetProcess
let provider: Provider
let offeringId: string

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'outpost-devnet-e2e-'))
  devnet = await startDevnetProcess(join(dataDir, 'devnet'))
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

    const created = await renter(['contract', 'create', '--offering', offeringId, '--ssh-pubkey', 'ssh-ed25519 AAAAC3 renter@laptop', '--duration-hours', '3'])
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
    expect(shown).toMatchObject({status: 'provisioned', instance: {ip_address: '127.0.0.1', ssh_port: 2222}})
    expect(shown.credentials).toBeUndefined()
    const decrypted = parseJson<ContractJson>(await renter(['contract', 'show', contract.contract_id, '--decrypt']))
    expect(decrypted.credentials).toEqual({username: 'root', password: 'hunter2'})

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

  it('start refuses a bad --unbonding-period, and stops cleanly on SIGTERM', async () => {
    const bad = await runCli(['devnet', 'start', '--port', '0', '--data-dir', join(dataDir, 'other'), '--unbonding-period', 'a week', '--json'])
    expect(bad.exitCode).toBe(2)
    expect(parseJson(bad)).toMatchObject({error: {code: 'invalid_duration'}})

    const own = await startDevnetProcess(join(dataDir, 'short'), ['--unbonding-period', '30s'])
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
