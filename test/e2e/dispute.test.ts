import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {ApiClient} from '../../src/core/api/client.js'
import {acceptDispute, getDispute, submitEvidence, type EvidenceItem} from '../../src/core/api/disputes.js'
import {toHex} from '../../src/core/hex.js'
import {readKeyFile} from '../../src/core/keys.js'
import {canonicalJson, sha256Hex, verifyUsageRecord, type SignedUsageRecord} from '../../src/core/signing.js'
import {renterKeyPath} from '../../src/devnet/renter.js'
import {parseJson, runCli, TEST_PASSPHRASE} from '../support/cli.js'
import {RENTER_SSH_KEY} from '../support/ssh-keys.js'
import {HAVE_SCRIPT, runInTerminal} from '../support/terminal.js'
import {fastAgentEnv, initProvider, killInstances, startAgent, startDevnet, waitFor, type Devnet, type ProviderSetup} from '../support/marketplace.js'

interface ErrorJson {
  error: {code: string; message: string; suggestion?: string}
}

interface DisputeJson {
  dispute_id: string
  contract_id: string
  status: string
  provider_response: string | null
  evidence: EvidenceItem[]
}

let devnet: Devnet
let provider: ProviderSetup
let renterDir: string
let env: Record<string, string>
let contractId: string
let disputeId: string

const NO_RETRY = {retries: 0, baseDelayMs: 1, maxDelayMs: 1}

/** A provider whose real agent served a contract (usage reported every second), and the renter's dispute about it. */
beforeAll(async () => {
  devnet = await startDevnet()
  provider = await initProvider(devnet.endpoint)
  env = {OUTPOST_CONFIG_DIR: provider.configDir, OUTPOST_MAIN_KEY_FILE: join(provider.configDir, 'provider-main.key'), OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
  renterDir = mkdtempSync(join(tmpdir(), 'outpost-renter-'))
  const renterFlags = ['--endpoint', devnet.endpoint, '--data-dir', renterDir]

  const agent = startAgent(fastAgentEnv(provider.configDir, {OUTPOST_AGENT_USAGE_INTERVAL_SECONDS: '1'}), join(provider.configDir, 'agent.log'))
  try {
    const created = await runCli(['devnet', 'contract', 'create', ...renterFlags, '--offering', provider.offeringId, '--ssh-pubkey', RENTER_SSH_KEY, '--json'], {env})
    expect(created.exitCode, created.stderr).toBe(0)
    contractId = parseJson<{contract_id: string}>(created).contract_id
    const archive = join(provider.configDir, 'state', 'usage', `${contractId}.jsonl`)
    const health = join(provider.configDir, 'state', 'health', `${contractId}.jsonl`)
    const served = await waitFor(() => existsSync(archive) && readFileSync(archive, 'utf8').trim().split('\n').length >= 2 && existsSync(health), 30_000)
    expect(served, readFileSync(agent.logFile, 'utf8')).toBe(true)
  } finally {
    agent.kill('SIGTERM')
    await agent.exited
    killInstances([contractId])
  }
  const opened = await runCli(['devnet', 'dispute', 'open', contractId, ...renterFlags, '--type', 'usage_disagreement', '--description', 'I was billed for hours the machine was down', '--json'], {env})
  expect(opened.exitCode, opened.stderr).toBe(0)
  disputeId = parseJson<{dispute_id: string}>(opened).dispute_id
}, 90_000)

afterAll(async () => {
  await devnet.stop()
  rmSync(renterDir, {recursive: true, force: true})
  rmSync(provider.configDir, {recursive: true, force: true})
})

describe('outpost dispute (built CLI, real agent, real devnet)', () => {
  it('lists and shows the renter\'s dispute', async () => {
    const listed = parseJson<{disputes: DisputeJson[]}>(await runCli(['dispute', 'list', '--status', 'open', '--json'], {env}))
    expect(listed.disputes).toEqual([expect.objectContaining({dispute_id: disputeId, contract_id: contractId, status: 'open', type: 'usage_disagreement'})])
    const table = await runCli(['dispute', 'list'], {env})
    expect(table.stdout).toContain(disputeId)
    const shown = await runCli(['dispute', 'show', disputeId], {env})
    expect(shown.exitCode, shown.stderr).toBe(0)
    expect(shown.stdout).toContain('I was billed for hours the machine was down')
    expect(shown.stdout).toMatch(/response\s+\(none yet\)/)
  })

  it('--auto answers with the agent\'s signed usage records and journal entries, which verify on their own from the renter\'s side', async () => {
    const preview = await runCli(['dispute', 'evidence', disputeId, '--auto', '--dry-run'], {env})
    expect(preview.exitCode, preview.stderr).toBe(0)
    expect(preview.stdout).toMatch(/usage_record\s+[0-9a-f]{16}…\s+signed usage record/)
    // The agent's archived health checks, summarised: the uptime the renter disputes.
    expect(preview.stdout).toMatch(/health_checks\s+[0-9a-f]{16}…\s+[1-9]\d* health checks of the instance by the agent/)
    expect(parseJson<DisputeJson>(await runCli(['dispute', 'show', disputeId, '--json'], {env})).status).toBe('open')

    // Evidence can't be taken back: like accept, it needs --yes off a terminal (and with --json), and asks in one.
    const unconfirmed = await runCli(['dispute', 'evidence', disputeId, '--auto'], {env})
    expect(unconfirmed.exitCode).toBe(2)
    expect(unconfirmed.stderr).toContain('submitting evidence needs confirmation and there is no terminal to ask')
    expect(parseJson<ErrorJson>(await runCli(['dispute', 'evidence', disputeId, '--auto', '--json'], {env})).error.code).toBe('confirmation_required')
    if (HAVE_SCRIPT) {
      const declined = await runInTerminal(['dispute', 'evidence', disputeId, '--auto'], {env, steps: [{waitFor: '(y/N)', send: 'n\r'}]})
      expect(declined.output).toMatch(/Submit \d+ evidence item\(s\)\? They can't be taken back\./)
      expect(declined.output).toContain('submitting evidence cancelled: nothing was changed')
    }
    expect(parseJson<DisputeJson>(await runCli(['dispute', 'show', disputeId, '--json'], {env})).status).toBe('open')

    const submitted = await runCli(['dispute', 'evidence', disputeId, '--auto', '--yes', '--json'], {env})
    expect(submitted.exitCode, submitted.stderr).toBe(0)
    const first = parseJson<{submitted: boolean; dispute: DisputeJson}>(submitted)
    expect(first).toMatchObject({submitted: true, dispute: {status: 'responded'}})

    // Twice is once: every item is held by its hash already, so nothing is sent again.
    const again = await runCli(['dispute', 'evidence', disputeId, '--auto', '--yes', '--json'], {env})
    expect(again.exitCode, again.stderr).toBe(0)
    expect(parseJson<{submitted: boolean; plan: {evidence: unknown[]; already_submitted: number}}>(again)).toMatchObject({
      submitted: false,
      plan: {evidence: [], already_submitted: first.dispute.evidence.length},
    })
    expect((await runCli(['dispute', 'evidence', disputeId, '--auto', '--yes'], {env})).stdout).toContain('nothing new to submit')

    // What the renter reads back: every usage record verifies by itself, signed by the provider's agent key.
    const renter = new ApiClient({endpoint: devnet.endpoint, key: await readKeyFile(renterKeyPath(renterDir)), retry: NO_RETRY})
    const seen = await getDispute(renter, disputeId)
    expect(seen.provider_response).toMatch(/signed usage record\(s\)/)
    const records = seen.evidence.filter((item) => item.type === 'usage_record').map((item) => item.data as SignedUsageRecord)
    expect(records.length).toBeGreaterThanOrEqual(2)
    for (const record of records) {
      expect(record).toMatchObject({contract_id: contractId, signer: toHex(provider.agentKey.publicKey)})
      expect(verifyUsageRecord(record)).toBe(true)
      expect(verifyUsageRecord({...record, cpu_core_seconds: record.cpu_core_seconds + 1})).toBe(false)
    }
    for (const item of seen.evidence) expect(item.hash).toBe(sha256Hex(canonicalJson(item.data)))
    const events = seen.evidence.filter((item) => item.type === 'agent_journal_entry').map((item) => (item.data as {event: string}).event)
    expect(events).toEqual(expect.arrayContaining(['provision_started', 'instance_ready', 'report_delivered']))
  })

  it('--file adds evidence with the SHA-256 of an attached file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-evidence-'))
    writeFileSync(join(dir, 'uptime.log'), 'up 3 days, load 0.1\n')
    writeFileSync(join(dir, 'evidence.json'), JSON.stringify({provider_response: 'The host log shows no downtime.', evidence: [{type: 'log', description: 'host uptime log', file: 'uptime.log'}]}))
    const added = await runCli(['dispute', 'evidence', disputeId, '--file', join(dir, 'evidence.json'), '--yes', '--json'], {env})
    expect(added.exitCode, added.stderr).toBe(0)
    const dispute = parseJson<{dispute: DisputeJson}>(added).dispute
    expect(dispute.provider_response).toBe('The host log shows no downtime.')
    expect(dispute.evidence.at(-1)).toEqual({type: 'log', description: 'host uptime log', hash: sha256Hex('up 3 days, load 0.1\n'), data: {file: 'uptime.log', size_bytes: 20}})
    rmSync(dir, {recursive: true, force: true})
  })

  it('the marketplace keeps evidence by its hash: the same item sent twice is held once', async () => {
    const main = new ApiClient({endpoint: devnet.endpoint, key: provider.mainKey, retry: NO_RETRY})
    const before = (await getDispute(main, disputeId)).evidence.length
    const item = {type: 'note', description: 'sent twice on purpose', hash: sha256Hex('sent twice on purpose')}
    await submitEvidence(main, disputeId, {provider_response: 'The host log shows no downtime.', evidence: [item, item]})
    const after = await submitEvidence(main, disputeId, {provider_response: 'The host log shows no downtime.', evidence: [item]})
    expect(after.evidence).toHaveLength(before + 1)
  })

  it('the agent key can neither add evidence nor accept (403)', async () => {
    const agent = new ApiClient({endpoint: devnet.endpoint, key: provider.agentKey, retry: NO_RETRY})
    await expect(submitEvidence(agent, disputeId, {provider_response: 'x', evidence: []})).rejects.toMatchObject({status: 403})
    await expect(acceptDispute(agent, disputeId)).rejects.toMatchObject({status: 403})
  })

  it('accept needs --yes without a terminal; an accepted dispute takes no more evidence', async () => {
    const refused = await runCli(['dispute', 'accept', disputeId], {env})
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toContain('accepting a dispute needs confirmation')
    const accepted = await runCli(['dispute', 'accept', disputeId, '--yes', '--json'], {env})
    expect(accepted.exitCode, accepted.stderr).toBe(0)
    expect(parseJson<DisputeJson>(accepted).status).toBe('accepted')
    const late = await runCli(['dispute', 'evidence', disputeId, '--auto'], {env})
    expect(late.exitCode).toBe(1)
    expect(late.stderr).toContain(`dispute ${disputeId} is already accepted`)
    expect(parseJson<{disputes: DisputeJson[]}>(await runCli(['dispute', 'list', '--status', 'open', '--json'], {env})).disputes).toEqual([])
  })
})
