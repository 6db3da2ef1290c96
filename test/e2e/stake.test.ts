import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {z} from 'zod'

import {ApiClient} from '../../src/core/api/client.js'
import {claimRewards, depositStake, getStake, unstake} from '../../src/core/api/stake.js'
import {Contract} from '../../src/core/api/schemas.js'
import {formatAmount, parseAmount} from '../../src/core/decimal.js'
import {readKeyFile} from '../../src/core/keys.js'
import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {BIN, parseJson, REPO_ROOT, runCli, tempConfigDir, TEST_PASSPHRASE} from '../support/cli.js'
import {renter, waitFor} from '../support/marketplace.js'

/** 10 tokens a second: a contract served for a moment earns a reward worth claiming. */
const OFFERING = `
[[offerings]]
name = "pricey"
product_type = "compute"
cpu_cores = 1
memory_mb = 512
storage_gb = 5
price_per_hour = "36000"
`
// Long enough for two CLI runs on a busy machine to see the amount still unbonding.
const UNBONDING_MS = 5000

interface StakeJson {
  provider_pubkey: string
  staked: string
  tier: string
  max_concurrent_contracts: number | null
  unbonding: {amount: string; release_at: number}[]
  rewards_pending: string
  next_tier: {name: string; needed: string} | null
}
interface ChangeJson {
  amount: string
  tier_before: string
  tier_after: string
  tier_changed: boolean
  release_at?: number
  stake: StakeJson
}

let server: MarketplaceServer
let dataDir: string
let configDir: string
let env: Record<string, string>
let providerPubkey: string

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'outpost-devnet-'))
  server = await startMarketplace({dataDir, port: 0, host: '127.0.0.1', unbondingPeriodMs: UNBONDING_MS, logError: () => undefined})
  configDir = tempConfigDir()
  expect((await runCli(['init', '--main-key', '--endpoint', server.endpoint], {env: {OUTPOST_CONFIG_DIR: configDir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}})).exitCode).toBe(0)
  writeFileSync(join(configDir, 'outpost.toml'), readFileSync(join(configDir, 'outpost.toml'), 'utf8') + OFFERING)
  env = {OUTPOST_CONFIG_DIR: configDir, OUTPOST_MAIN_KEY_FILE: join(configDir, 'provider-main.key'), OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
  const registered = await runCli(['register', '--json', '--name', 'Stake Co', '--contact-email', 'ops@stake.example'], {env})
  expect(registered.exitCode, registered.stderr).toBe(0)
  providerPubkey = parseJson<{provider_pubkey: string}>(registered).provider_pubkey
})

afterAll(async () => {
  await server.stop()
  rmSync(dataDir, {recursive: true, force: true})
  rmSync(configDir, {recursive: true, force: true})
})

async function stake(args: string[], extraEnv: Record<string, string> = {}) {
  return runCli(['stake', ...args], {env: {...env, ...extraEnv}})
}

async function info(): Promise<StakeJson> {
  const result = await stake(['info', '--json'])
  expect(result.exitCode, result.stderr).toBe(0)
  return parseJson<StakeJson>(result)
}

describe('outpost stake (built CLI, real devnet)', () => {
  it('deposit → tier changes → withdraw → unbonding → release, with exact amounts', async () => {
    expect(await info()).toMatchObject({provider_pubkey: providerPubkey, staked: '0', tier: 'unstaked', max_concurrent_contracts: 2, next_tier: {name: 'consumer', needed: '1000'}})

    const almost = parseJson<ChangeJson>(await stake(['deposit', '999.999999', '--json']))
    expect(almost).toMatchObject({amount: '999.999999', tier_after: 'unstaked', tier_changed: false, stake: {next_tier: {name: 'consumer', needed: '0.000001'}}})
    const consumer = parseJson<ChangeJson>(await stake(['deposit', '0.000001', '--json']))
    expect(consumer).toMatchObject({tier_before: 'unstaked', tier_after: 'consumer', tier_changed: true, stake: {staked: '1000', max_concurrent_contracts: 4}})
    const workstation = await stake(['deposit', '1500'])
    expect(workstation.exitCode, workstation.stderr).toBe(0)
    expect(workstation.stdout).toContain('tier consumer → workstation')

    const before = Date.now()
    const withdrawn = parseJson<ChangeJson>(await stake(['withdraw', '0.000001', '--yes', '--json']))
    expect(withdrawn).toMatchObject({amount: '0.000001', tier_before: 'workstation', tier_after: 'consumer', tier_changed: true, stake: {staked: '2499.999999', max_concurrent_contracts: 4}})
    expect(withdrawn.release_at).toBeGreaterThanOrEqual(before + UNBONDING_MS - 50)
    expect(withdrawn.release_at).toBeLessThanOrEqual(Date.now() + UNBONDING_MS)
    expect(withdrawn.stake.unbonding).toEqual([{amount: '0.000001', release_at: withdrawn.release_at}])

    const human = await stake(['info'])
    expect(human.stdout).toMatch(/unbonding\s+0\.000001, released \d{4}-\d\d-\d\dT/)
    expect(human.stdout).toMatch(/next tier\s+workstation at 2500: stake 0\.000001 more for up to 8 concurrent contracts/)

    const reader = new ApiClient({endpoint: server.endpoint})
    expect(await waitFor(async () => (await getStake(reader, providerPubkey)).unbonding.length === 0, UNBONDING_MS + 5000, 100)).toBe(true)
    expect(await info()).toMatchObject({staked: '2499.999999', unbonding: []})
  })

  it('withdraw needs --yes without a terminal or with --json, and changes nothing without it', async () => {
    const staked = (await info()).staked
    const refused = await stake(['withdraw', '1'])
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toContain('withdrawing stake needs confirmation and there is no terminal to ask')
    expect(refused.stderr).toContain('pass --yes')
    const refusedJson = await stake(['withdraw', '1', '--json'])
    expect(refusedJson.exitCode).toBe(2)
    expect(parseJson(refusedJson)).toMatchObject({error: {code: 'confirmation_required'}})
    expect((await info()).staked).toBe(staked)
  })

  it('in a terminal, withdraw asks first: "n" changes nothing, "y" withdraws', async (context) => {
    if (!existsSync('/usr/bin/script')) context.skip()
    // util-linux `script` gives the CLI a real terminal; the answer is typed once the prompt is up.
    const inTerminal = async (answer: string) => {
      const child = execa('script', ['-qec', `stty cols 200; exec node ${BIN} stake withdraw 0.5`, '/dev/null'], {cwd: REPO_ROOT, env: {...env, CI: '', NO_COLOR: '1'}, reject: false})
      let output = ''
      child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
      await waitFor(() => output.includes('(y/N)'), 15_000, 50)
      child.stdin?.write(`${answer}\r`)
      const result = await child
      return {exitCode: result.exitCode, output: output + String(result.stdout)}
    }
    const staked = (await info()).staked
    const declined = await inTerminal('n')
    expect(declined.output).toContain(`Unstake 0.5 of ${staked}?`)
    expect(declined.output).toContain('withdrawing stake cancelled: nothing was changed')
    expect((await info()).staked).toBe(staked)
    const confirmed = await inTerminal('y')
    expect(confirmed.exitCode).toBe(0)
    expect(confirmed.output).toContain('unstaked 0.5')
    expect(formatAmount(parseAmount(staked) - parseAmount('0.5'))).toBe((await info()).staked)
  })

  it.each([
    ['abc', /"abc" is not a decimal amount/],
    ['1.1234567', /"1.1234567" is not a decimal amount/],
    ['0', /must be above zero/],
  ])('refuses the amount %s with a clear usage error', async (amount, message) => {
    const result = await stake(['deposit', amount])
    expect(result.exitCode).toBe(2)
    expect(result.stderr).toMatch(message)
  })

  it('refuses to withdraw more than is staked, before asking', async () => {
    const result = await stake(['withdraw', '1000000', '--yes'])
    expect(result.exitCode).toBe(1)
    expect(result.stderr).toContain('cannot withdraw 1000000: 2499.499999 is staked')
  })

  it('claims exactly the rewards a served contract earned', async () => {
    const agentKey = await readKeyFile(join(configDir, 'agent.key'))
    const agent = new ApiClient({endpoint: server.endpoint, key: agentKey})
    const offerings = await new ApiClient({endpoint: server.endpoint}).get('/offerings', {schema: z.object({offerings: z.array(z.object({offering_id: z.string(), provider_pubkey: z.string()}))}), public: true})
    const offeringId = offerings.offerings.find((offering) => offering.provider_pubkey === providerPubkey)?.offering_id ?? ''
    const tenant = renter(server.endpoint)
    const contract = await tenant.create(offeringId)
    const contractPath = `/providers/${providerPubkey}/contracts/${contract.contract_id}`
    await agent.post(`${contractPath}/lock`, {schema: z.unknown(), body: {ttl_seconds: 60}})
    await agent.put(`${contractPath}/provisioning`, {schema: Contract, body: {status: 'provisioning'}})
    await agent.put(`${contractPath}/provisioning`, {schema: Contract, body: {status: 'provisioned', instance: {external_id: 'vm-1', ip_address: '192.0.2.1', ssh_port: 22}}})
    await new Promise((resolve) => setTimeout(resolve, 300))
    await tenant.cancel(contract.contract_id)
    await agent.put(`${contractPath}/terminated`, {schema: Contract})
    const pending = (await info()).rewards_pending
    expect(Number(pending)).toBeGreaterThan(2)

    expect((await stake(['claim'])).exitCode).toBe(2)
    const claimed = parseJson<{claimed: string; stake: StakeJson}>(await stake(['claim', '--yes', '--json']))
    expect(claimed).toMatchObject({claimed: pending, stake: {rewards_pending: '0'}})
    const again = await stake(['claim'])
    expect(again.exitCode).toBe(0)
    expect(again.stdout).toContain('no rewards pending: nothing to claim')
  })

  it('the agent key can do none of stake, withdraw, claim (403), and the CLI refuses it as a main key', async () => {
    const agent = new ApiClient({endpoint: server.endpoint, key: await readKeyFile(join(configDir, 'agent.key')), retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1}})
    for (const call of [() => depositStake(agent, providerPubkey, '1'), () => unstake(agent, providerPubkey, '1'), () => claimRewards(agent, providerPubkey)]) {
      await expect(call()).rejects.toMatchObject({status: 403, apiCode: 'permission_denied'})
    }
    expect((await getStake(agent, providerPubkey)).staked).toBe('2499.499999')
    const viaCli = await stake(['deposit', '1'], {OUTPOST_MAIN_KEY_FILE: join(configDir, 'agent.key')})
    expect(viaCli.exitCode).toBe(2)
    expect(viaCli.stderr).toContain('holds a agent key, not the provider main key')
    const noKey = await runCli(['stake', 'deposit', '1'], {env: {OUTPOST_CONFIG_DIR: configDir}})
    expect(noKey.exitCode).toBe(2)
    expect(noKey.stderr).toContain('pass --main-key-file FILE or set OUTPOST_MAIN_KEY_FILE')
  })
})
