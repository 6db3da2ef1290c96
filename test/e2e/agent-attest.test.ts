import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'

import {generateKeyPair, resultAttestationData, type SignedResultEnvelope} from '../../src/core/signing.js'
import {parseQuoteAttest} from '../../src/core/tpm-quote.js'
import {submitJob} from '../../src/devnet/jobs.js'
import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {runCli, TEST_PASSPHRASE} from '../support/cli.js'
import {initProvider, startAgent, waitFor, type AgentProcess, type ProviderSetup} from '../support/marketplace.js'
import {Swtpm, swtpmAvailability} from '../support/swtpm.js'
import {jobAgentEnv, readJobMarket, renterClient} from '../support/job-run.js'

/**
 * `outpost run` (the built CLI) with `[attestation] enabled` on a devnet's job market (PROTOCOL §§12, 14): every
 * result it submits carries a quote of its software TPM over the envelope, and the devnet accepts them; an agent of
 * another provider, without an enrolled AK, is never given a job that requires attestation.
 */

const availability = swtpmAvailability()
const temp = mkdtempSync(join(tmpdir(), 'outpost-agent-attest-'))
const agents: AgentProcess[] = []
const configDirs: string[] = []
let server: MarketplaceServer | undefined
let tpm: Swtpm | undefined

afterAll(async () => {
  for (const running of agents) running.kill('SIGKILL')
  await server?.stop()
  await tpm?.stop()
  for (const dir of configDirs) rmSync(dir, {recursive: true, force: true})
  rmSync(temp, {recursive: true, force: true})
})

function agent(setup: ProviderSetup, name: string, overrides: Record<string, string>): AgentProcess {
  const logFile = join(temp, `${name}.log`)
  writeFileSync(logFile, '')
  const running = startAgent(jobAgentEnv(setup.configDir, {OUTPOST_JOBS_KINDS: '["quantum_circuit"]', ...overrides}), logFile)
  agents.push(running)
  return running
}

async function stop(running: AgentProcess): Promise<void> {
  running.kill('SIGTERM')
  const {code} = await running.exited
  expect(code, readFileSync(running.logFile, 'utf8').slice(-3000)).toBe(0)
}

describe.skipIf(!availability.available)(`outpost run attests its results${availability.available ? '' : ` (skipped: ${availability.reason})`}`, () => {
  it('attests every result and takes attested jobs once enrolled; an agent without an enrolled AK is never given one', {timeout: 240_000}, async () => {
    const dataDir = join(temp, 'devnet')
    server = await startMarketplace({dataDir, port: 0, host: '127.0.0.1', logError: () => undefined})
    tpm = await Swtpm.start({manufactured: true})
    const [attested, plain] = await Promise.all([initProvider(server.endpoint), initProvider(server.endpoint)])
    configDirs.push(attested.configDir, plain.configDir)
    const renter = renterClient(server.endpoint, generateKeyPair())
    const open = async (requiresAttestation: boolean) =>
      (await submitJob(renter, {example: 'ghz', shots: 64, reward: {mode: 'fixed', amount: '1'}, collateral: '1', deadlineSeconds: 600, leaseSeconds: 60, maxAttempts: 2, resources: {cpu_cores: 1, memory_mb: 256, gpu_count: 0}, requiresAttestation})).job_id

    // The provider without an AK serves plain jobs and never leases an attested one.
    const unenrolled = agent(plain, 'unenrolled', {})
    const needsTpm = [await open(true), await open(true)]
    const plainJob = await open(false)
    expect(await waitFor(() => readJobMarket(dataDir).jobs.find((job) => job.job_id === plainJob)?.status === 'completed', 60_000, 250), readFileSync(unenrolled.logFile, 'utf8').slice(-3000)).toBe(true)
    await stop(unenrolled)
    expect(readJobMarket(dataDir).leases.filter((lease) => needsTpm.includes(lease.job_id))).toEqual([])

    const env = {OUTPOST_CONFIG_DIR: attested.configDir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE, OUTPOST_MAIN_KEY_FILE: join(attested.configDir, 'provider-main.key'), OUTPOST_ATTESTATION_TCTI: tpm.tcti}
    const enrolled = await runCli(['attest', 'enroll', '--pin-pcrs'], {env})
    expect(enrolled.exitCode, enrolled.stderr).toBe(0)
    const secondPlain = await open(false)
    const serving = agent(attested, 'attested', {OUTPOST_ATTESTATION_ENABLED: 'true', OUTPOST_ATTESTATION_TCTI: tpm.tcti})
    const mine = [...needsTpm, secondPlain]
    const done = await waitFor(() => readJobMarket(dataDir).jobs.filter((job) => mine.includes(job.job_id)).every((job) => job.status === 'completed'), 120_000, 250)
    expect(done, readFileSync(serving.logFile, 'utf8').slice(-4000)).toBe(true)
    await stop(serving)

    const leases = readJobMarket(dataDir).leases.filter((lease) => mine.includes(lease.job_id))
    expect(leases.map((lease) => [lease.provider_pubkey, lease.status])).toEqual(mine.map(() => [attested.providerPubkey, 'accepted']))
    for (const lease of leases) {
      const envelope = JSON.parse(lease.envelope ?? '{}') as SignedResultEnvelope
      const quote = Buffer.from(envelope.attestation?.quote_b64 ?? '', 'base64')
      expect(parseQuoteAttest(quote).extraData).toEqual(resultAttestationData(envelope))
    }
    expect(readFileSync(serving.logFile, 'utf8')).toContain('"attestation":"sha256:0,1,2,3,4,5,6,7"')
  })
})
