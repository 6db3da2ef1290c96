import {execFile} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {X509Certificate} from 'node:crypto'
import {promisify} from 'node:util'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {TpmResultAttester, signAttestedResult} from '../../src/attest/attest.js'
import {ApiClient} from '../../src/core/api/client.js'
import {JobsApi} from '../../src/core/api/jobs.js'
import type {Lease} from '../../src/core/api/job-schemas.js'
import {loadConfig} from '../../src/core/config/load.js'
import {readKeyFile} from '../../src/core/keys.js'
import {generateKeyPair, resultAttestationData, sha256Hex, signResultEnvelope, type KeyPair, type SignedResultEnvelope} from '../../src/core/signing.js'
import {parseQuoteAttest} from '../../src/core/tpm-quote.js'
import {systemClock} from '../../src/marketplace/clock.js'
import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {parseJson, runCli, tempConfigDir, TEST_PASSPHRASE} from '../support/cli.js'
import {Swtpm, swtpmAvailability} from '../support/swtpm.js'
import {createJob, GHZ_3, heartbeat, jobBody, simulate, uploadProgram, type JobAnswer} from '../marketplace/job-fixtures.js'
import type {Provider, Target} from '../support/harness.js'

/**
 * PROTOCOL §14 from the agent's side, end to end: `outpost attest enroll` and `status` run as the built CLI against a
 * real devnet, with a software TPM manufactured like a vendor's (EK certificate from its own CA), and results attested
 * by the service the job loop uses, each submitted to the devnet and judged by it.
 */

const run = promisify(execFile)
const availability = swtpmAvailability()

interface EnrollJson {
  agent_pubkey: string
  ak_handle: string
  ak_created: boolean
  ak_public_pem: string
  ek_certificate: {subject: string; issuer: string; nv_index: string; matches_ek: boolean} | null
  pcr_selection: string
  expected_pcr_digest: string | null
  tpm: {manufacturer: string; vendor: string}
}
interface StatusJson {
  tpm: {answers: boolean; error?: string}
  ak: {recorded: boolean; in_tpm: boolean | null; matches_record: boolean | null}
  marketplace: {reachable: boolean; enrolled?: boolean; matches_local_ak?: boolean | null; pinned?: boolean; pcrs_match_pinned?: boolean | null}
  ready: boolean
}

describe.skipIf(!availability.available)(`outpost attest with swtpm${availability.available ? '' : ` (skipped: ${availability.reason})`}`, () => {
  let server: MarketplaceServer
  let market: Target
  let dataDir: string
  let configDir: string
  let env: Record<string, string>
  let tpm: Swtpm
  let otherTpm: Swtpm
  let agent: KeyPair
  let provider: Provider
  let jobs: JobsApi
  let digest: string
  const renter = generateKeyPair()

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'outpost-devnet-'))
    server = await startMarketplace({dataDir, port: 0, host: '127.0.0.1', logError: () => undefined})
    market = {endpoint: server.endpoint, clock: systemClock}
    ;[tpm, otherTpm] = await Promise.all([Swtpm.start({manufactured: true}), Swtpm.start()])
    configDir = tempConfigDir()
    const base = {OUTPOST_CONFIG_DIR: configDir, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE}
    expect((await runCli(['init', '--main-key', '--endpoint', server.endpoint], {env: base})).exitCode).toBe(0)
    env = {...base, OUTPOST_MAIN_KEY_FILE: join(configDir, 'provider-main.key'), OUTPOST_ATTESTATION_TCTI: tpm.tcti, OUTPOST_ATTESTATION_ENABLED: 'true'}
    const registered = await runCli(['register', '--json', '--name', 'Attested Co', '--contact-email', 'ops@attested.example'], {env})
    expect(registered.exitCode, registered.stderr).toBe(0)
    const staked = await runCli(['stake', 'deposit', '1000'], {env})
    expect(staked.exitCode, staked.stderr).toBe(0)
    const providerPubkey = parseJson<{provider_pubkey: string}>(registered).provider_pubkey
    agent = await readKeyFile(join(configDir, 'agent.key'), {passphrase: async () => TEST_PASSPHRASE})
    const main = await readKeyFile(join(configDir, 'provider-main.key'), {passphrase: async () => TEST_PASSPHRASE, mainKey: true})
    provider = {pk: providerPubkey, main, agent} as Provider
    await heartbeat(market, provider, {capabilities: ['job:quantum_circuit']})
    jobs = new JobsApi(new ApiClient({endpoint: server.endpoint, key: agent, retry: {retries: 0, baseDelayMs: 1, maxDelayMs: 1}}), providerPubkey)
    digest = await uploadProgram(market, renter, Buffer.from(GHZ_3))
  }, 60_000)

  afterAll(async () => {
    await server?.stop()
    await tpm?.stop()
    await otherTpm?.stop()
    rmSync(dataDir, {recursive: true, force: true})
    rmSync(configDir, {recursive: true, force: true})
  })

  const attest = (args: string[]) => runCli(['attest', ...args], {env})
  const loaded = () => loadConfig(join(configDir, 'outpost.toml'), {...process.env, ...env})

  async function attestedJob(): Promise<JobAnswer> {
    return createJob(market, renter, jobBody('quantum_circuit', digest, '{"shots": 64, "seed": 1}', {requires_attestation: true}))
  }

  function fieldsFor(leased: Lease) {
    const output = Buffer.from(JSON.stringify(simulate(GHZ_3, 64)))
    return {
      job_id: leased.job_id,
      lease_id: leased.lease_id,
      program_digest: digest,
      input_digest: sha256Hex(Buffer.from('{"shots": 64, "seed": 1}')),
      output: {digest: sha256Hex(output), size_bytes: output.length, data_b64: output.toString('base64')},
      started_at: leased.leased_at,
      finished_at: leased.leased_at + 10,
    }
  }

  async function leaseOne(): Promise<Lease> {
    const job = await attestedJob()
    return jobs.lease(job.job_id)
  }

  it('says the TPM answers and nothing is enrolled; a job requiring attestation is neither offered nor leased', async () => {
    const status = await attest(['status', '--json'])
    expect(status.exitCode, status.stderr).toBe(6)
    const body = parseJson<StatusJson>(status)
    expect(body).toMatchObject({tpm: {answers: true}, ak: {recorded: false, in_tpm: false}, marketplace: {reachable: true, enrolled: false}, ready: false})
    const job = await attestedJob()
    expect((await jobs.openJobs(0)).map((open) => open.job_id)).not.toContain(job.job_id)
    await expect(jobs.lease(job.job_id)).rejects.toMatchObject({code: 'attestation_required'})
    const doctor = await runCli(['doctor', '--json'], {env})
    const check = parseJson<{checks: {name: string; status: string; remedy?: string}[]}>(doctor).checks.find((entry) => entry.name === 'attestation')
    expect(check).toMatchObject({status: 'fail', remedy: expect.stringContaining('outpost attest enroll')})
  })

  it('enrolls an AK under the EK with the EK certificate, which chains to the TPM maker\'s CA; enrolling again reuses the AK', async () => {
    const enrolled = await attest(['enroll', '--json'])
    expect(enrolled.exitCode, enrolled.stderr).toBe(0)
    const first = parseJson<EnrollJson>(enrolled)
    expect(first).toMatchObject({agent_pubkey: Buffer.from(agent.publicKey).toString('hex'), ak_handle: '0x81010002', ak_created: true, pcr_selection: 'sha256:0,1,2,3,4,5,6,7', expected_pcr_digest: null})
    expect(first.ek_certificate).toMatchObject({nv_index: '0x01c00002', matches_ek: true, issuer: expect.stringContaining('swtpm-localca')})
    expect(first.tpm).toMatchObject({manufacturer: 'IBM', vendor: 'SW TPM'})

    // The chain a verifier walks: EK certificate → the maker's issuing CA → its root (here the test CA swtpm_setup made).
    const listed = (await (await fetch(`${server.endpoint}/api/v1/providers/${provider.pk}/attestation-keys`)).json()) as {keys: {ek_certificate_pem: string; ak_public_pem: string}[]}
    const ekCertificate = new X509Certificate(listed.keys[0]?.ek_certificate_pem ?? '')
    const {root, issuer} = tpm.caCertificates()
    expect(ekCertificate.verify(new X509Certificate(issuer).publicKey)).toBe(true)
    expect(new X509Certificate(issuer).verify(new X509Certificate(root).publicKey)).toBe(true)
    expect(ekCertificate.verify(new X509Certificate(root).publicKey)).toBe(false)
    const dir = mkdtempSync(join(tmpdir(), 'outpost-chain-'))
    try {
      writeFileSync(join(dir, 'ek.pem'), listed.keys[0]?.ek_certificate_pem ?? '')
      writeFileSync(join(dir, 'root.pem'), root)
      writeFileSync(join(dir, 'issuer.pem'), issuer)
      const verified = await run('openssl', ['verify', '-partial_chain', '-CAfile', join(dir, 'root.pem'), '-untrusted', join(dir, 'issuer.pem'), join(dir, 'ek.pem')])
      expect(verified.stdout).toContain(': OK')
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }

    const again = parseJson<EnrollJson>(await attest(['enroll', '--json']))
    expect(again).toMatchObject({ak_created: false, ak_public_pem: first.ak_public_pem})
    const status = await attest(['status', '--json'])
    expect(status.exitCode, status.stdout).toBe(0)
    expect(parseJson<StatusJson>(status)).toMatchObject({ak: {recorded: true, in_tpm: true, matches_record: true}, marketplace: {enrolled: true, matches_local_ak: true, pinned: false}, ready: true})
    const doctor = parseJson<{checks: {name: string; status: string}[]}>(await runCli(['doctor', '--json'], {env}))
    expect(doctor.checks.find((entry) => entry.name === 'attestation')).toMatchObject({status: 'pass'})
  })

  it('an attested result is accepted; tpm2_checkquote agrees with the quote the service made', async () => {
    const job = await attestedJob()
    expect((await jobs.openJobs(0)).map((open) => open.job_id)).toContain(job.job_id)
    const leased = await jobs.lease(job.job_id)
    const attester = TpmResultAttester.open(loaded())
    const envelope = await signAttestedResult(agent, attester, fieldsFor(leased))
    expect(await jobs.submitResult(leased.lease_id, envelope)).toMatchObject({verdict: 'accepted'})

    const attestation = envelope.attestation
    if (!attestation) throw new Error('no attestation')
    const quote = Buffer.from(attestation.quote_b64, 'base64')
    const parsed = parseQuoteAttest(quote)
    expect(parsed.extraData).toEqual(resultAttestationData(envelope))
    expect(parsed.pcrDigest.toString('hex')).toBe(attestation.pcr_digest)
    const dir = mkdtempSync(join(tmpdir(), 'outpost-checkquote-'))
    try {
      const recorded = JSON.parse(readFileSync(join(configDir, 'state', 'attestation', 'ak.json'), 'utf8')) as {ak_public_pem: string}
      writeFileSync(join(dir, 'ak.pem'), recorded.ak_public_pem)
      writeFileSync(join(dir, 'quote.msg'), quote)
      writeFileSync(join(dir, 'quote.sig'), Buffer.from(attestation.signature_b64, 'base64'))
      const args = ['-u', join(dir, 'ak.pem'), '-m', join(dir, 'quote.msg'), '-s', join(dir, 'quote.sig'), '-g', 'sha256', '-q']
      await expect(run('tpm2_checkquote', [...args, resultAttestationData(envelope).toString('hex')])).resolves.toBeDefined()
      await expect(run('tpm2_checkquote', [...args, sha256Hex('another envelope')])).rejects.toBeDefined()
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })

  it('jobs run-local shows the attestation step: the result quoted by the enrolled AK', async () => {
    const local = await runCli(['jobs', 'run-local', '--example', 'ghz', '--json'], {env})
    expect(local.exitCode, local.stderr).toBe(0)
    const result = parseJson<{attestation: {pcr_digest: string} | null}>(local)
    expect(result.attestation?.pcr_digest).toMatch(/^[0-9a-f]{64}$/)
    const plain = await runCli(['jobs', 'run-local', '--example', 'ghz'], {env})
    expect(plain.stdout).toMatch(/Attest the result \(TPM quote/)
    expect(plain.stdout).toMatch(/attested {2}TPM quote verified, PCR digest [0-9a-f]{64}/)
  })

  it('rejects with bad_attestation a quote over another envelope, by another TPM\'s AK, and a replayed one', async () => {
    const attester = TpmResultAttester.open(loaded())

    const overOther = await leaseOne()
    const fields = fieldsFor(overOther)
    const quoteOfOther = await attester.attest({...fields, finished_at: fields.finished_at + 1, signer: Buffer.from(agent.publicKey).toString('hex')})
    expect(await jobs.submitResult(overOther.lease_id, signResultEnvelope(agent, {...fields, attestation: quoteOfOther}))).toMatchObject({verdict: 'rejected', reason: 'bad_attestation'})

    const byOther = await leaseOne()
    const otherAk = await otherTpm.createAk('ecc')
    const otherFields = {...fieldsFor(byOther), signer: Buffer.from(agent.publicKey).toString('hex')}
    const otherQuote = await otherTpm.quote(otherAk, resultAttestationData(otherFields))
    const foreign = {type: 'tpm2-quote' as const, quote_b64: otherQuote.quote.toString('base64'), signature_b64: otherQuote.signature.toString('base64'), pcr_digest: parseQuoteAttest(otherQuote.quote).pcrDigest.toString('hex')}
    expect(await jobs.submitResult(byOther.lease_id, signResultEnvelope(agent, {...fieldsFor(byOther), attestation: foreign}))).toMatchObject({verdict: 'rejected', reason: 'bad_attestation'})

    const first = await leaseOne()
    const accepted: SignedResultEnvelope = await signAttestedResult(agent, attester, fieldsFor(first))
    expect(await jobs.submitResult(first.lease_id, accepted)).toMatchObject({verdict: 'accepted'})
    const replayLease = await leaseOne()
    const replayed = signResultEnvelope(agent, {...fieldsFor(replayLease), ...(accepted.attestation ? {attestation: accepted.attestation} : {})})
    expect(await jobs.submitResult(replayLease.lease_id, replayed)).toMatchObject({verdict: 'rejected', reason: 'bad_attestation'})
  })

  it('with --pin-pcrs, a quote after a PCR was extended is rejected with bad_attestation, and status says the PCRs differ', async () => {
    const pinned = parseJson<EnrollJson>(await attest(['enroll', '--pin-pcrs', '--json']))
    expect(pinned.expected_pcr_digest).toMatch(/^[0-9a-f]{64}$/)
    const attester = TpmResultAttester.open(loaded())
    const before = await leaseOne()
    expect(await jobs.submitResult(before.lease_id, await signAttestedResult(agent, attester, fieldsFor(before)))).toMatchObject({verdict: 'accepted'})

    await tpm.extendPcr(7, sha256Hex('a boot loader nobody enrolled'))
    const after = await leaseOne()
    const envelope = await signAttestedResult(agent, attester, fieldsFor(after))
    expect(envelope.attestation?.pcr_digest).not.toBe(pinned.expected_pcr_digest)
    expect(await jobs.submitResult(after.lease_id, envelope)).toMatchObject({verdict: 'rejected', reason: 'bad_attestation'})
    const status = await attest(['status', '--json'])
    expect(status.exitCode).toBe(6)
    expect(parseJson<StatusJson>(status)).toMatchObject({marketplace: {pinned: true, pcrs_match_pinned: false}, ready: false})
  })

  it('says what to do when the TPM does not answer', async () => {
    const gone = await runCli(['attest', 'enroll', '--json'], {env: {...env, OUTPOST_ATTESTATION_TCTI: 'swtpm:host=127.0.0.1,port=1'}})
    expect(gone.exitCode).toBe(5)
    expect(parseJson<{error: {code: string; suggestion: string}}>(gone).error).toMatchObject({code: 'tpm_unreachable', suggestion: expect.stringContaining('software TPM')})
    const noDevice = await runCli(['attest', 'status', '--json'], {env: {...env, OUTPOST_ATTESTATION_TCTI: 'device:/dev/outpost-no-tpm'}})
    expect(parseJson<StatusJson & {tpm: {remedy?: string}}>(noDevice).tpm).toMatchObject({answers: false, remedy: expect.stringContaining('no TPM')})
  })
})
