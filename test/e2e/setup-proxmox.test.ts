import {existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {execa} from 'execa'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'

import {startMarketplace, type MarketplaceServer} from '../../src/marketplace/server.js'
import {ProxmoxEmulator} from '../emulators/proxmox/emulator.js'
import {BIN, parseJson, REPO_ROOT, runCli, tempConfigDir, TEST_PASSPHRASE} from '../support/cli.js'
import {SSHD, startFakeProxmoxHost, type FakeProxmoxHost} from '../setup/proxmox/fake-host.js'

const TOKEN_SECRET = '5e1f0c2a-9b3d-4e6f-8a7b-0c1d2e3f4a5b'
const haveSshd = existsSync(SSHD)
if (!haveSshd) console.warn(`setup-proxmox e2e tests skipped: ${SSHD} is missing (apt-get install -y openssh-server; .ci/run installs it)`)

interface SetupJson {
  dry_run: boolean
  host: {host_key: string; host_key_source: string; pve_version: string; node: string}
  storage: string
  bridge: string
  templates: {image: string; vmid: number; name: string; status: string}[]
  vendor_snippet: {volume: string; status: string}
  api_access: {role: string; pool: string; user: string; acl: string; token: string; token_id: string}
  token_check?: {pve_version: string; templates_visible: number[]}
  agent_key: {file: string; status: string; public_key?: string}
  delegation: {status: string; text_to_sign?: string; provider_pubkey?: string}
  config: {file: string; status: string; backup?: string}
  commands: string[]
  next_steps: string[]
}

interface ErrorJson {
  error: {code: string; message: string; suggestion?: string}
}

// Each test is a whole wizard run over SSH (a dozen CLI and remote commands): minutes on a busy 2-core machine.
describe.skipIf(!haveSshd)('outpost setup proxmox (built CLI, real OpenSSH server, fake PVE tools, Proxmox API emulator)', {timeout: 240_000}, () => {
  let host: FakeProxmoxHost
  let emulator: ProxmoxEmulator
  let marketplace: MarketplaceServer

  beforeAll(async () => {
    // The emulator stands for the host's API: same node name, the token secret the fake pveum hands out, and the
    // template the wizard makes (VMID 9000), since its VMs are its own and not the fake qm's.
    emulator = new ProxmoxEmulator({tokenSecret: TOKEN_SECRET, template: {vmid: 9000, node: 'pve', name: 'ubuntu-24.04-cloudinit', diskGb: 10, storage: 'local-lvm'}})
    await emulator.start()
    ;[host, marketplace] = await Promise.all([
      startFakeProxmoxHost(emulator.certificate.cert),
      startMarketplace({dataDir: mkdtempSync(join(tmpdir(), 'outpost-devnet-')), port: 0, host: '127.0.0.1', logError: () => undefined}),
    ])
  })

  afterAll(async () => {
    await Promise.all([host?.stop(), emulator?.stop(), marketplace?.stop()])
  })

  beforeEach(() => {
    host.reset()
    host.configure({node: 'pve', tokenSecret: TOKEN_SECRET})
  })

  /** The flags of a complete non-interactive run against the fake host and the emulator. */
  function flags(extra: string[] = [], hostKeyFingerprint = host.hostKeyFingerprint): string[] {
    return [
      'setup', 'proxmox', '--json', '--host', '127.0.0.1', '--ssh-port', String(host.port), '--ssh-key', host.userKey,
      '--host-key-fingerprint', hostKeyFingerprint, '--storage', 'local-lvm', '--image-dir', host.imageDir,
      '--api-port', String(emulator.port), '--endpoint', marketplace.endpoint, ...extra,
    ]
  }

  const cleanEnv = (dir: string) => ({OUTPOST_CONFIG_DIR: dir, SSH_AUTH_SOCK: undefined, OUTPOST_SSH_PASSWORD: undefined, OUTPOST_KEY_PASSPHRASE: TEST_PASSPHRASE})

  it('a full run sets up the host and writes a config that doctor and test-provision pass; a second run changes nothing', async () => {
    const dir = tempConfigDir('outpost-setup-')
    const env = cleanEnv(dir)
    expect((await runCli(['init', '--main-key', '--endpoint', marketplace.endpoint], {env})).exitCode).toBe(0)
    writeFileSync(join(dir, 'outpost.toml'), readFileSync(join(dir, 'outpost.toml'), 'utf8') + '\n[provider]\nname = "Acme Compute"\ncontact_email = "ops@acme.example"\n')

    const first = await runCli(flags(), {env})
    expect(first.exitCode, first.stderr + first.stdout).toBe(0)
    const result = parseJson<SetupJson>(first)
    expect(result).toMatchObject({
      dry_run: false,
      host: {host_key: host.hostKeyFingerprint, host_key_source: 'flag', pve_version: '8.2.4', node: 'pve'},
      storage: 'local-lvm',
      bridge: 'vmbr0',
      templates: [{image: 'ubuntu-24.04', vmid: 9000, name: 'ubuntu-24.04-cloudinit', status: 'created'}],
      vendor_snippet: {volume: 'local:snippets/outpost-vendor.yaml', status: 'created'},
      api_access: {role: 'created', pool: 'created', user: 'created', acl: 'created', token: 'created', token_id: 'outpost@pve!agent'},
      token_check: {pve_version: '8.2.4', templates_visible: [9000]},
      agent_key: {status: 'kept'},
      delegation: {status: 'created'},
      config: {status: 'updated'},
    })

    // The template as Proxmox would hold it: guest agent, serial console, imported disk, cloud-init drive, boot order.
    const state = host.state()
    expect(state.vms['9000']?.config).toMatchObject({
      name: 'ubuntu-24.04-cloudinit',
      agent: 'enabled=1',
      serial0: 'socket',
      vga: 'serial0',
      net0: 'virtio,bridge=vmbr0',
      scsi0: 'local-lvm:vm-9000-disk-0,size=3584M',
      ide2: 'local-lvm:cloudinit,media=cdrom',
      boot: 'order=scsi0',
      cicustom: 'vendor=local:snippets/outpost-vendor.yaml',
      template: 1,
    })
    expect(state.vms['9000']?.config).not.toHaveProperty('unused0')
    expect(readFileSync(join(host.stateDir, 'snippets', 'outpost-vendor.yaml'), 'utf8')).toContain('qemu-guest-agent')
    expect(readdirSync(host.imageDir)).toEqual(['noble-server-cloudimg-amd64.img'])
    // Least privilege: the role has the provisioner's privileges and nothing of the administrator's.
    expect(state.roles.OutpostAgent?.split(',')).toEqual(expect.arrayContaining(['VM.Clone', 'VM.Allocate', 'VM.PowerMgmt', 'VM.Monitor', 'Datastore.AllocateSpace']))
    expect(state.roles.OutpostAgent).not.toMatch(/Sys\.Modify|Permissions\.Modify|User\.Modify|Datastore\.Allocate(,|$)/)
    // The token's rights are scoped: the pool that holds the template (and its storage, where clones go), the node's
    // status and the bridge's zone; never / (where they would reach every VM on the host).
    expect(state.acls.map((acl) => acl.path)).toEqual(['/pool/outpost', '/nodes/pve', '/sdn/zones/localnetwork/vmbr0'])
    expect(state.acls.every((acl) => acl.roleid === 'OutpostAgent' && acl.ugid === 'outpost@pve' && acl.type === 'user')).toBe(true)
    expect(state.pools.outpost).toMatchObject({vms: [9000], storage: ['local-lvm']})
    expect(state.tokens['outpost@pve']).toEqual(['agent'])

    const configFile = join(dir, 'outpost.toml')
    const config = readFileSync(configFile, 'utf8')
    expect(statSync(configFile).mode & 0o777).toBe(0o600)
    expect(config).toContain('type = "proxmox"')
    expect(config).toContain(`token_secret = "${TOKEN_SECRET}"`)
    expect(config).toContain('pool = "outpost"')
    expect(config).toContain(`tls_fingerprint = "${emulator.fingerprint}"`)
    expect(config).toContain('[provider]')
    expect(result.config.backup && existsSync(result.config.backup)).toBe(true)
    // The API server the agent talks to saw the token, over TLS pinned to the fingerprint read through SSH.
    expect(emulator.requests.some((request) => request.authorization === `PVEAPIToken=outpost@pve!agent=${TOKEN_SECRET}`)).toBe(true)

    // doctor runs the Proxmox provisioner's own checks (API, token, template, storage) on the config as written.
    const doctor = await runCli(['doctor', '--json'], {env})
    expect(doctor.exitCode, doctor.stdout + doctor.stderr).toBe(0)
    expect(parseJson<{checks: {name: string; status: string; message: string}[]}>(doctor).checks).toContainEqual(
      expect.objectContaining({name: 'provisioner', status: 'pass', message: expect.stringContaining('template 9000')}),
    )
    const provision = await runCli(['test-provision', '--json'], {env})
    expect(provision.exitCode, provision.stdout + provision.stderr).toBe(0)
    expect(parseJson(provision)).toMatchObject({kept: false, health: {status: 'healthy'}})
    expect(emulator.guests).toEqual([])

    const callsBefore = host.calls().length
    const second = await runCli(flags(), {env})
    expect(second.exitCode, second.stderr + second.stdout).toBe(0)
    const again = parseJson<SetupJson>(second)
    expect(again).toMatchObject({
      templates: [{vmid: 9000, status: 'kept'}],
      vendor_snippet: {status: 'unchanged'},
      api_access: {role: 'unchanged', pool: 'unchanged', user: 'unchanged', acl: 'unchanged', token: 'unchanged'},
      token_check: {templates_visible: [9000]},
      delegation: {status: 'unchanged'},
      config: {status: 'unchanged'},
      commands: [],
    })
    expect(readFileSync(configFile, 'utf8')).toBe(config)
    expect(host.state()).toEqual(state)
    // Only reads ran the second time.
    const secondCalls = host.calls().slice(callsBefore)
    expect(secondCalls.filter((call) => /^(qm (create|set|importdisk|template|destroy)|pveum \S+ (add|modify|remove|delete)|pveum user token (add|remove)|wget)/.test(call))).toEqual([])

    // The config the wizard wrote has no offerings: init adds them, sized from what the Proxmox node reports.
    const offered = await runCli(['init', '--offerings', 'small,large', '--price-per-core', '0.05', '--json'], {env})
    expect(offered.exitCode, offered.stdout + offered.stderr).toBe(0)
    const added = parseJson<{capacity: {source: string; cpu_cores: number}; offerings: {name: string; cpu_cores: number}[]; agent_key: {status: string}}>(offered)
    expect(added).toMatchObject({capacity: {source: 'the proxmox backend'}, agent_key: {status: 'kept'}})
    expect(added.offerings.map((offering) => offering.name)).toEqual(['small', 'large'])
    expect(added.offerings.every((offering) => offering.cpu_cores <= added.capacity.cpu_cores)).toBe(true)
    expect(readFileSync(configFile, 'utf8')).toContain(`token_secret = "${TOKEN_SECRET}"`)
    expect(statSync(configFile).mode & 0o777).toBe(0o600)
  })

  it('takes back the grant on / that an earlier wizard made, scoping the token to its pool', async () => {
    const dir = tempConfigDir('outpost-setup-')
    expect((await runCli(flags(['--provider-pubkey', 'ab'.repeat(32)]), {env: cleanEnv(dir)})).exitCode).toBe(0)
    const statePath = join(host.stateDir, 'state.json')
    const state = host.state()
    // What the wizard used to leave: the role on / (every VM and storage of the host), the pool not there.
    writeFileSync(statePath, JSON.stringify({...state, acls: [{path: '/', roleid: 'OutpostAgent', type: 'user', ugid: 'outpost@pve', propagate: 1}], pools: {}}))
    const again = await runCli(flags(['--provider-pubkey', 'ab'.repeat(32)]), {env: cleanEnv(dir)})
    expect(again.exitCode, again.stdout + again.stderr).toBe(0)
    expect(parseJson<SetupJson>(again).api_access).toMatchObject({pool: 'created', acl: 'updated', token: 'unchanged'})
    expect(host.state().acls.map((acl) => acl.path)).toEqual(['/pool/outpost', '/nodes/pve', '/sdn/zones/localnetwork/vmbr0'])
    expect(host.calls()).toContain('pveum acl delete / --users outpost@pve --roles OutpostAgent')
  })

  it('in a terminal: a listr2 task list, and without the main key the delegation text to sign', async () => {
    const dir = tempConfigDir('outpost-setup-')
    const providerPubkey = 'ab'.repeat(32)
    const args = flags(['--provider-pubkey', providerPubkey, '--yes']).filter((arg) => arg !== '--json')
    // script(1) gives the CLI a pseudo-terminal on stdin and stdout, as a person's shell would.
    const command = 'stty cols 200 rows 50; exec ' + ['node', BIN, ...args].map((arg) => `'${arg}'`).join(' ')
    const run = await execa('script', ['-qec', command, '/dev/null'], {
      env: {...cleanEnv(dir), CI: 'false', NO_COLOR: '1', TERM: 'xterm'},
      reject: false,
      timeout: 110_000,
    })
    const output = String(run.stdout)
    expect(run.exitCode, output).toBe(0)
    expect(output).toMatch(/✔ Template ubuntu-24\.04 \(VM 9000, ubuntu-24\.04-cloudinit\): created/)
    expect(output).toMatch(/✔ Agent delegation: needs signature/)
    expect(output).toContain(`Delegation text for the provider main key to sign:\r\noutpost-delegation-v1\r\n`)
    expect(output).toContain(`outpost register --config ${join(dir, 'outpost.toml')} --provider-pubkey ${providerPubkey} --expires-at never`)
    expect(readFileSync(join(dir, 'outpost.toml'), 'utf8')).toContain(`provider_pubkey = "${providerPubkey}"`)
    expect(existsSync(join(dir, 'agent.key'))).toBe(true)
  })

  it('refuses a host key that differs from the one expected, before running anything', async () => {
    const dir = tempConfigDir('outpost-setup-')
    const wrong = 'SHA256:' + 'A'.repeat(43)
    const run = await runCli(flags([], wrong), {env: cleanEnv(dir)})
    expect(run.exitCode).toBe(4)
    const error = parseJson<ErrorJson>(run).error
    expect(error.code).toBe('host_key_mismatch')
    expect(error.message).toContain(host.hostKeyFingerprint)
    expect(host.calls()).toEqual([])
    expect(existsSync(join(dir, 'outpost.toml'))).toBe(false)
  })

  it('reports a wrong password as a refused login', async () => {
    const dir = tempConfigDir('outpost-setup-')
    const args = flags().filter((arg, index, all) => arg !== '--ssh-key' && all[index - 1] !== '--ssh-key')
    const run = await runCli(args, {env: {...cleanEnv(dir), OUTPOST_SSH_PASSWORD: 'not-the-password'}})
    expect(run.exitCode).toBe(4)
    expect(parseJson<ErrorJson>(run).error).toMatchObject({code: 'ssh_auth_failed'})
    expect(host.calls()).toEqual([])
  })

  it('destroys a template that fails half-way, and writes no config', async () => {
    host.configure({node: 'pve', tokenSecret: TOKEN_SECRET, failOn: {command: 'set --ide2', message: "lvcreate 'pve/vm-9000-cloudinit' error:   Volume group \"pve\" has insufficient free space"}})
    const dir = tempConfigDir('outpost-setup-')
    const run = await runCli(flags(), {env: cleanEnv(dir)})
    expect(run.exitCode).toBe(1)
    const error = parseJson<ErrorJson>(run).error
    expect(error.code).toBe('template_failed')
    expect(error.message).toContain('insufficient free space')
    expect(error.message).toContain('VM 9000 was destroyed')
    expect(host.calls()).toContain('qm destroy 9000 --purge 1 --destroy-unreferenced-disks 1')
    expect(host.state().vms).toEqual({})
    expect(existsSync(join(dir, 'outpost.toml'))).toBe(false)
  })

  it('with no terminal and missing answers, stops at once and names the flags', async () => {
    const dir = tempConfigDir('outpost-setup-')
    const started = Date.now()
    const run = await runCli(['setup', 'proxmox'], {env: cleanEnv(dir), timeout: 10_000})
    expect(Date.now() - started).toBeLessThan(8000)
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain('--host (or OUTPOST_PROXMOX_HOST)')
    expect(run.stderr).toContain('--endpoint (or OUTPOST_MARKETPLACE_ENDPOINT)')
    expect(run.stderr).toContain('--ssh-key')

    // Known host but unknown key: the fingerprint is required, and nothing runs on the host.
    const second = await runCli(['setup', 'proxmox', '--host', '127.0.0.1', '--ssh-port', String(host.port), '--ssh-key', host.userKey, '--endpoint', marketplace.endpoint], {env: cleanEnv(dir)})
    expect(second.exitCode).toBe(2)
    expect(second.stderr).toContain('--host-key-fingerprint (or OUTPOST_SSH_HOST_KEY_FINGERPRINT)')
    expect(host.calls()).toEqual([])
  })

  it('--dry-run reads the host, prints what it would run, and changes nothing', async () => {
    const dir = tempConfigDir('outpost-setup-')
    const run = await runCli(flags(['--images', 'ubuntu-24.04,debian-12']).filter((arg) => arg !== '--json').concat('--dry-run'), {env: cleanEnv(dir)})
    expect(run.exitCode, run.stderr).toBe(0)
    expect(run.stdout).toContain('Dry run: nothing was changed.')
    for (const command of [
      'qm create 9000 --name ubuntu-24.04-cloudinit',
      'qm create 9002 --name debian-12-cloudinit',
      `qm importdisk 9000 ${join(host.imageDir, 'noble-server-cloudimg-amd64.img')} local-lvm`,
      'qm set 9000 --ide2 local-lvm:cloudinit',
      'qm template 9000',
      'pveum role add OutpostAgent --privs',
      "pveum pool add outpost --comment 'Outpost: the templates and the VMs the agent rents out'",
      'pveum pool modify outpost --vms 9000,9002 --storage local-lvm',
      'pveum acl modify /pool/outpost --users outpost@pve --roles OutpostAgent --propagate 1',
      'pveum user token add outpost@pve agent --privsep 0',
      'wget -q -O',
    ]) {
      expect(run.stdout).toContain(command)
    }
    expect(host.state()).toEqual({vms: {}, roles: {}, users: [], acls: [], tokens: {}, pools: {}})
    expect(existsSync(host.imageDir)).toBe(false)
    expect(readdirSync(dir)).toEqual([])
  })
})

describe('outpost setup proxmox --help', () => {
  it('does not load ssh2, listr2 or the prompts', async () => {
    const dir = tempConfigDir('outpost-trace-')
    const trace = join(dir, 'imports.txt')
    const result = await execa('node', ['--import', join(REPO_ROOT, 'test/fixtures/trace-imports.mjs'), BIN, 'setup', 'proxmox', '--help'], {
      env: {OUTPOST_TRACE_IMPORTS: trace, OUTPOST_CONFIG_DIR: dir, NO_COLOR: '1'},
    })
    expect(String(result.stdout)).toContain('--host-key-fingerprint')
    const loaded = readFileSync(trace, 'utf8').split('\n')
    for (const heavy of ['ssh2', 'listr2', '@inquirer', 'proxmox-api']) expect(loaded.filter((url) => url.includes(`/node_modules/${heavy}/`))).toEqual([])
  })
})
