import Database from 'better-sqlite3'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {toHex} from '../../src/core/hex.js'
import {generateKeyPair} from '../../src/core/signing.js'
import {DATABASE_FILE_NAME} from '../../src/marketplace/database.js'
import {runCli} from '../support/cli.js'
import {fastAgentEnv, initProvider, instanceProcesses, killInstances, renter, startAgent, startDevnet, waitFor, type Devnet, type ProviderSetup} from '../support/marketplace.js'

/**
 * A lying marketplace, for real: contracts made by a renter on a real devnet, then rewritten in the devnet's own
 * database the way a dishonest (or breached) marketplace would serve them, and the built agent run against it.
 * PROTOCOL §6: the agent provisions only what the renter signed for, within its own [[offerings]]; the rest fails for
 * good with a category, and nothing is made for it or sealed to a key the renter does not hold.
 */

let devnet: Devnet
let provider: ProviderSetup
const contractIds: string[] = []
const logDir = mkdtempSync(join(tmpdir(), 'outpost-agent-trust-'))

beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
})

afterAll(async () => {
  killInstances(contractIds)
  await devnet?.stop()
  if (provider) rmSync(provider.configDir, {recursive: true, force: true})
  rmSync(logDir, {recursive: true, force: true})
})

interface Row {
  contract_id: string
  status: string
  last_error: string | null
}

/** The marketplace rewrites a contract row: what an agent is then served. */
function rewrite(contractId: string, columns: Record<string, string | number>): void {
  const db = new Database(join(devnet.dataDir, DATABASE_FILE_NAME))
  try {
    const assignments = Object.keys(columns).map((column) => `${column} = @${column}`).join(', ')
    db.prepare(`UPDATE contracts SET ${assignments} WHERE contract_id = @contract_id`).run({...columns, contract_id: contractId})
  } finally {
    db.close()
  }
}

function rows(ids: readonly string[]): Map<string, Row> {
  const db = new Database(join(devnet.dataDir, DATABASE_FILE_NAME), {readonly: true})
  try {
    const all = db.prepare<[], Row>('SELECT contract_id, status, last_error FROM contracts').all()
    return new Map(all.filter((row) => ids.includes(row.contract_id)).map((row) => [row.contract_id, row]))
  } finally {
    db.close()
  }
}

describe('outpost run against a marketplace that lies about contracts', () => {
  it('provisions the honest contract; refuses a swapped renter key, a swapped SSH key and an inflated machine, for good', {timeout: 90_000}, async () => {
    const buyer = renter(devnet.endpoint)
    const [honest, swappedKey, swappedSsh, inflated] = [
      await buyer.create(provider.offeringId),
      await buyer.create(provider.offeringId),
      await buyer.create(provider.offeringId),
      await buyer.create(provider.offeringId),
    ]
    const ids = [honest, swappedKey, swappedSsh, inflated].map((contract) => contract!.contract_id)
    contractIds.push(...ids)
    // The credentials would be sealed to the marketplace's own key; the machine would let its SSH key in; the
    // provider would pay for a machine 64 times the one sold.
    rewrite(swappedKey!.contract_id, {requester_pubkey: toHex(generateKeyPair().publicKey)})
    rewrite(swappedSsh!.contract_id, {ssh_pubkey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMarketplace intruder'})
    rewrite(inflated!.contract_id, {cpu_cores: 64, memory_mb: 262_144})

    const agent = startAgent(fastAgentEnv(provider.configDir), join(logDir, 'agent.log'))
    try {
      const settled = await waitFor(() => {
        const now = rows(ids)
        return now.get(honest!.contract_id)?.status !== 'accepted' && now.get(honest!.contract_id)?.status !== 'provisioning' && ids.slice(1).every((id) => now.get(id)?.status === 'provisioning_failed')
      }, 60_000, 300)
      const final = rows(ids)
      expect(settled, JSON.stringify([...final.values()])).toBe(true)
      expect(['provisioned', 'active']).toContain(final.get(honest!.contract_id)?.status)
      expect(final.get(swappedKey!.contract_id)?.last_error).toMatch(/^request_refused: bad_signature: /)
      expect(final.get(swappedSsh!.contract_id)?.last_error).toMatch(/^request_refused: ssh_key_mismatch: /)
      expect(final.get(inflated!.contract_id)?.last_error).toBe('exceeds_offering: the contract asks more than the offering: cpu_cores 64 > 1')
      // Nothing was made for the lying ones, and they are not offered again (provisioning_failed is final).
      const processes = instanceProcesses(ids)
      expect(ids.map((id) => processes.get(id)?.length ?? 0)).toEqual([1, 0, 0, 0])
      const refusals = agent.logLines().filter((line) => typeof line.msg === 'string' && line.msg.startsWith('refused: the contract is not what its renter signed for'))
      expect(refusals.map((line) => line.contract_id).sort()).toEqual(ids.slice(1).sort())
    } finally {
      agent.kill('SIGTERM')
    }
    expect((await agent.exited).code).toBe(0)
  })

  it('a second `outpost run` on the same state dir exits 4 and names the agent that holds it', {timeout: 60_000}, async () => {
    const first = startAgent(fastAgentEnv(provider.configDir), join(logDir, 'first.log'))
    try {
      expect(await waitFor(() => first.logLines().some((line) => line.msg === 'agent starting'), 20_000)).toBe(true)
      const second = await runCli(['run', '--json'], {env: fastAgentEnv(provider.configDir)})
      expect(second.exitCode).toBe(4)
      expect(JSON.parse(second.stdout)).toMatchObject({
        error: {code: 'agent_running', message: `another agent (pid ${first.pid}) runs with the state dir ${join(provider.configDir, 'state')}`},
      })
    } finally {
      first.kill('SIGTERM')
    }
    expect((await first.exited).code).toBe(0)
  })
})
