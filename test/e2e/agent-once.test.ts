import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {BANNER_SERVICE, LocalProvisioner} from '../../src/provisioners/local/local-provisioner.js'
import {runCli} from '../support/cli.js'
import {
  addAgent,
  fastAgentEnv,
  initProvider,
  instanceProcesses,
  killInstances,
  renter,
  startAgent,
  startDevnet,
  waitFor,
  type Devnet,
  type ProviderSetup,
} from '../support/marketplace.js'
import {contractFixture} from '../provisioners/contract-suite.js'

/** `outpost run --once` (cron, CI) and reconciliation: unknown instances are kept unless --prune-orphans says otherwise. */

let devnet: Devnet
let provider: ProviderSetup
const ids: string[] = []
const dirs: string[] = []

beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
})

afterAll(async () => {
  killInstances(ids)
  await devnet?.stop()
  for (const dir of [provider?.configDir, ...dirs]) if (dir) rmSync(dir, {recursive: true, force: true})
})

describe('outpost run --once', () => {
  it('provisions what is pending in one round, keeps an unknown instance, and prunes it only with --prune-orphans', {timeout: 60_000}, async () => {
    const buyer = renter(devnet.endpoint)
    const contract = await buyer.create(provider.offeringId)
    ids.push(contract.contract_id)
    // An instance in the agent's state dir that the marketplace has never heard of.
    const orphanContract = contractFixture()
    ids.push(orphanContract.contract_id)
    const local = new LocalProvisioner({stateDir: join(provider.configDir, 'state')})
    await local.provision(orphanContract, AbortSignal.timeout(10_000))
    const env = fastAgentEnv(provider.configDir)

    const first = await runCli(['run', '--once', '--json'], {env})
    expect(first.exitCode, first.stderr).toBe(0)
    expect(JSON.parse(first.stdout)).toMatchObject({mode: 'once', contracts: {provisioned: 1}, outbox_left: 0})
    expect(['provisioned', 'active']).toContain((await buyer.show(contract.contract_id)).status)
    expect(first.stderr).toContain('instance unknown to the marketplace: kept (pass --prune-orphans to destroy it)')
    expect(instanceProcesses([orphanContract.contract_id]).get(orphanContract.contract_id)).toHaveLength(1)

    const second = await runCli(['run', '--once', '--prune-orphans', '--json'], {env})
    expect(second.exitCode, second.stderr).toBe(0)
    expect(JSON.parse(second.stdout)).toMatchObject({contracts: {provisioned: 0}})
    expect(second.stderr).toContain('destroying it (--prune-orphans)')
    expect(instanceProcesses([orphanContract.contract_id]).get(orphanContract.contract_id)).toBeUndefined()
    // The contract's own instance is the marketplace's to keep.
    expect(instanceProcesses([contract.contract_id]).get(contract.contract_id)).toHaveLength(1)
  })

  it('exits with the unreachable code, and a remedy, when the marketplace is down', {timeout: 60_000}, async () => {
    await devnet.pause()
    try {
      const result = await runCli(['run', '--once'], {env: fastAgentEnv(provider.configDir)})
      expect(result.exitCode).toBe(5)
      expect(result.stderr).toMatch(/cannot reach/)
      expect(result.stderr).toMatch(/→ check \[marketplace\] endpoint/)
    } finally {
      await devnet.resume()
    }
  })

  it('on SIGTERM checkpoints work in progress within --shutdown-timeout, releases its lock and exits 0', {timeout: 60_000}, async () => {
    const logDir = mkdtempSync(join(tmpdir(), 'outpost-agent-shutdown-'))
    dirs.push(logDir)
    // A workload that takes 5 s to come up: the signal arrives while it is being provisioned.
    const slow = JSON.stringify(['/bin/sh', '-c', `sleep 5; exec ${process.execPath} ${BANNER_SERVICE}`])
    const agent = startAgent(fastAgentEnv(provider.configDir, {OUTPOST_PROVISIONER_LOCAL_COMMAND: slow}), join(logDir, 'a.log'), ['--shutdown-timeout', '1'])
    const buyer = renter(devnet.endpoint)
    const contract = await buyer.create(provider.offeringId)
    ids.push(contract.contract_id)
    expect(await waitFor(() => agent.logLines().some((line) => line.msg === 'provisioning' && line.contract_id === contract.contract_id), 15_000)).toBe(true)
    const signalled = Date.now()
    agent.kill('SIGTERM')
    expect((await agent.exited).code).toBe(0)
    expect(Date.now() - signalled).toBeLessThan(4000)
    expect(readFileSync(agent.logFile, 'utf8')).toContain('interrupted: checkpointed for the next run')
    expect(instanceProcesses([contract.contract_id]).get(contract.contract_id)).toBeUndefined()

    // The lock was released: another agent of the provider takes the contract at once, not after the 30 s TTL.
    const other = await addAgent(devnet.endpoint, provider, {label: 'agent-shutdown'})
    dirs.push(other.configDir)
    const next = startAgent(fastAgentEnv(other.configDir), join(logDir, 'b.log'))
    try {
      expect(await waitFor(async () => ['provisioned', 'active'].includes((await buyer.show(contract.contract_id)).status), 15_000)).toBe(true)
    } finally {
      next.kill('SIGTERM')
    }
    expect((await next.exited).code).toBe(0)
    expect(instanceProcesses([contract.contract_id]).get(contract.contract_id)).toHaveLength(1)
  })
})
