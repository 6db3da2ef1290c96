import {readFileSync, writeFileSync} from 'node:fs'
import {createServer, type AddressInfo, type Server} from 'node:net'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {ManualRequestStore} from '../../src/provisioners/manual/requests.js'
import {ProxmoxEmulator} from '../emulators/proxmox/emulator.js'
import {makeSelfSignedCertificate} from '../emulators/tls.js'
import {parseJson, REPO_ROOT, runCli, tempConfigDir} from '../support/cli.js'

interface TestProvisionJson {
  provisioner: string
  instance: {external_id: string; ip_address: string; ssh_port: number; credentials_received: boolean}
  health: {status: string}
  phases: {name: string; ms: number}[]
  total_ms: number
  kept: boolean
}

const emulator = new ProxmoxEmulator()
// A real key: the emulator checks keys with ssh-keygen, as Proxmox does.
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFhZCSOcY0K2DWaxbEmHYsHvG+sO5GVop+G3rqGlDimd operator@example'

function proxmoxConfig(overrides: {fingerprint?: string; tokenSecret?: string} = {}): Record<string, string> {
  const dir = tempConfigDir('outpost-test-provision-')
  writeFileSync(
    join(dir, 'outpost.toml'),
    [
      '[marketplace]',
      'endpoint = "http://127.0.0.1:9"',
      '',
      '[provisioner]',
      'type = "proxmox"',
      '',
      '[provisioner.proxmox]',
      'host = "127.0.0.1"',
      `port = ${emulator.port}`,
      `token_id = "${emulator.tokenId}"`,
      `token_secret = "${overrides.tokenSecret ?? emulator.tokenSecret}"`,
      `tls_fingerprint = "${overrides.fingerprint ?? emulator.fingerprint}"`,
      'template_vmid = 9000',
      'node = "pve"',
      '',
      '[[offerings]]',
      'name = "small"',
      'product_type = "compute"',
      'cpu_cores = 2',
      'memory_mb = 2048',
      'storage_gb = 16',
      'price_per_hour = "0.05"',
    ].join('\n'),
  )
  return {OUTPOST_CONFIG_DIR: dir}
}

beforeAll(() => emulator.start())
afterAll(() => emulator.stop())

describe('outpost test-provision (built CLI)', () => {
  it('provisions on Proxmox, checks health, terminates, and times each phase (--json)', async () => {
    const result = await runCli(['test-provision', '--json', '--ssh-pubkey', SSH_KEY], {env: proxmoxConfig()})
    expect(result.exitCode, result.stderr).toBe(0)
    const json = parseJson<TestProvisionJson>(result)
    expect(json).toMatchObject({provisioner: 'proxmox', health: {status: 'healthy'}, kept: false, instance: {credentials_received: true, ssh_port: 22}})
    expect(json.phases.map((phase) => phase.name)).toEqual(['clone', 'configure', 'start', 'address', 'health', 'terminate'])
    expect(json.total_ms).toBeGreaterThanOrEqual(json.phases.reduce((sum, phase) => sum + phase.ms, 0) - 50)
    const config = emulator.requests.find((request) => request.method === 'PUT' && request.path === `/api2/json/nodes/pve/qemu/${json.instance.external_id}/config`)
    expect(config?.params).toMatchObject({cores: '2', memory: '2048', sshkeys: encodeURIComponent(`${SSH_KEY}\n`)})
    expect(emulator.vms.has(Number(json.instance.external_id))).toBe(false)
  })

  it('keeps the instance with --keep and prints the phases for a person', async () => {
    const result = await runCli(['test-provision', '--keep'], {env: proxmoxConfig()})
    expect(result.exitCode, result.stderr).toBe(0)
    expect(result.stdout).toMatch(/^provisioning a test instance with proxmox\.\.\.$/m)
    for (const phase of ['clone', 'configure', 'start', 'address', 'health', 'total']) expect(result.stdout).toMatch(new RegExp(`^  ${phase} +\\d+\\.\\d s$`, 'm'))
    expect(result.stdout).toMatch(/✓ \d+ at 10\.10\.\d+\.\d+:22 was healthy; kept running \(--keep\)/)
    const kept = emulator.guests.filter((vm) => vm.status === 'running')
    expect(kept).toHaveLength(1)
    for (const vm of kept) emulator.vms.delete(vm.vmid)
  })

  it('fails for good on an SSH key that Proxmox refuses, says so, and leaves no VM', async () => {
    // Well-formed enough for outpost (an ssh-ed25519 blob), but no key ssh-keygen accepts (4 bytes of key data).
    const result = await runCli(['test-provision', '--json', '--ssh-pubkey', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAABG5vdGE= operator@example'], {env: proxmoxConfig()})
    expect(result.exitCode).toBe(1)
    const {error} = parseJson<{error: {code: string; message: string}}>(result)
    expect(error.code).toBe('provision_failed')
    expect(error.message).toContain("the renter's SSH key was refused by Proxmox: SSH public key validation error")
    expect(emulator.guests).toEqual([])
  })

  it('refuses a host with another certificate before sending the token, and says what to do', async () => {
    const before = emulator.requests.length
    const result = await runCli(['test-provision', '--json'], {env: proxmoxConfig({fingerprint: makeSelfSignedCertificate('evil.test').fingerprint256})})
    expect(result.exitCode).toBe(1)
    const {error} = parseJson<{error: {code: string; message: string; suggestion: string}}>(result)
    expect(error.code).toBe('provision_failed')
    expect(error.message).toContain(`presented a certificate with SHA-256 fingerprint ${emulator.fingerprint}`)
    expect(error.suggestion).toContain('outpost doctor')
    expect(emulator.requests.length).toBe(before)
  })

  it('doctor checks the Proxmox setup: reachable, token, template, storage', async () => {
    const good = parseJson<{checks: {name: string; status: string; message: string; remedy?: string}[]}>(await runCli(['doctor', '--json'], {env: proxmoxConfig()}))
    const provisioner = good.checks.find((check) => check.name === 'provisioner')
    expect(provisioner?.status).toBe('pass')
    expect(provisioner?.message).toMatch(/answers \(Proxmox VE 8\.2\.4\).*token outpost@pve!agent is accepted.*template 9000.*local-lvm on pve: \d+ GB free \(16 GB needed\)/)

    const refused = parseJson<{checks: {name: string; status: string; message: string; remedy?: string}[]}>(
      await runCli(['doctor', '--json'], {env: proxmoxConfig({tokenSecret: '11111111-2222-3333-4444-555555555555'})}),
    )
    expect(refused.checks.find((check) => check.name === 'provisioner')).toMatchObject({status: 'fail', message: expect.stringContaining('was refused (authentication failure)'), remedy: expect.stringContaining('token_secret')})
  })
})

describe('outpost test-provision with the manual provisioner (built CLI)', () => {
  let machine: Server
  beforeAll(async () => {
    machine = createServer((socket) => {
      socket.on('error', () => {})
      socket.end('SSH-2.0-OpenSSH_9.2\r\n')
    })
    await new Promise<void>((resolve) => machine.listen(0, '127.0.0.1', resolve))
  })
  afterAll(() => new Promise<void>((resolve) => machine.close(() => resolve())))

  it('waits for `outpost contract complete`, then checks and ends the machine', async () => {
    const dir = tempConfigDir('outpost-test-provision-manual-')
    writeFileSync(join(dir, 'outpost.toml'), '[marketplace]\nendpoint = "http://127.0.0.1:9"\n\n[provisioner]\ntype = "manual"\n\n[provisioner.manual]\npoll_interval_seconds = 1\n')
    const env = {OUTPOST_CONFIG_DIR: dir}
    const running = runCli(['test-provision', '--json'], {env})
    const store = new ManualRequestStore(join(dir, 'state'))
    let pending = store.all().find((request) => request.status === 'pending')
    for (let waited = 0; !pending && waited < 15_000; waited += 100) {
      await sleep(100)
      pending = store.all().find((request) => request.status === 'pending')
    }
    expect(pending).toBeDefined()
    const id = pending?.contract_id ?? ''
    const port = String((machine.address() as AddressInfo).port)
    const wrong = await runCli(['contract', 'complete', 'ab'.repeat(16), '--ip', '127.0.0.1'], {env})
    expect(wrong.exitCode).toBe(2)
    expect(wrong.stderr).toContain(`no manual request for contract ${'ab'.repeat(16)}`)
    const complete = await runCli(['contract', 'complete', id, '--ip', '127.0.0.1', '--ssh-port', port], {env})
    expect(complete.exitCode, complete.stderr).toBe(0)
    expect(complete.stdout).toContain(`contract ${id}: machine outpost-${id} at 127.0.0.1:${port} recorded`)
    const result = await running
    expect(result.exitCode, result.stderr).toBe(0)
    const json = parseJson<TestProvisionJson>(result)
    expect(json).toMatchObject({provisioner: 'manual', health: {status: 'healthy'}, instance: {ip_address: '127.0.0.1', ssh_port: Number(port)}})
    expect(json.phases.map((phase) => phase.name)).toEqual(['provision', 'health', 'terminate'])
    expect(result.stderr).toContain(`contract ${id} needs a machine`)
    expect(result.stderr).toContain(`tear down machine outpost-${id}`)
  })
})

describe('proxmox-api is loaded only by a Proxmox backend that talks to its host', () => {
  async function tracedImports(env: Record<string, string>, args: string[]): Promise<string[]> {
    const trace = join(env.OUTPOST_CONFIG_DIR ?? '', 'imports.txt')
    await runCli(['doctor', '--json', ...args], {env: {...env, OUTPOST_TRACE_IMPORTS: trace, NODE_OPTIONS: `--import ${join(REPO_ROOT, 'test/fixtures/trace-imports.mjs')}`}})
    return readFileSync(trace, 'utf8').split('\n')
  }

  async function loadedModules(env: Record<string, string>, args: string[]): Promise<string[]> {
    return (await tracedImports(env, args)).filter((url) => /\/node_modules\/(proxmox-api|undici)\//.test(url))
  }

  it('doctor with the manual backend loads neither proxmox-api nor undici; with Proxmox it does', async () => {
    const dir = tempConfigDir('outpost-trace-manual-')
    writeFileSync(join(dir, 'outpost.toml'), '[marketplace]\nendpoint = "http://127.0.0.1:9"\n\n[provisioner]\ntype = "manual"\n')
    expect(await loadedModules({OUTPOST_CONFIG_DIR: dir}, [])).toEqual([])
    expect((await loadedModules(proxmoxConfig(), [])).length).toBeGreaterThan(0)
  })

  it('doctor loads the configured backend alone: the registry imports each backend on first use', async () => {
    const dir = tempConfigDir('outpost-trace-backends-')
    writeFileSync(join(dir, 'outpost.toml'), '[marketplace]\nendpoint = "http://127.0.0.1:9"\n\n[provisioner]\ntype = "manual"\n')
    const backendFolders = (await tracedImports({OUTPOST_CONFIG_DIR: dir}, [])).flatMap((url) => /\/dist\/provisioners\/(\w+)\//.exec(url)?.[1] ?? [])
    expect(new Set(backendFolders)).toEqual(new Set(['manual']))
  })
})
