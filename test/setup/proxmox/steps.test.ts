import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'

import {parseToml, validateConfig} from '../../../src/core/config/load.js'
import {ensureApiAccess} from '../../../src/setup/proxmox/api-access.js'
import {createTemplate, planTemplates} from '../../../src/setup/proxmox/cloud-templates.js'
import {configText, writeConfig, type ProxmoxConfigValues} from '../../../src/setup/proxmox/config-file.js'
import {hostKeyDecision, rememberHost} from '../../../src/setup/proxmox/host-key.js'
import {RemoteHost, type CommandRunner} from '../../../src/setup/proxmox/remote.js'
import type {CommandResult} from '../../../src/setup/proxmox/ssh.js'

/** A host that answers scripted commands (first matching prefix wins) and records every command line. */
function scriptedHost(answers: [prefix: string, result: Partial<CommandResult>][], dryRun = false): {host: RemoteHost; ran: string[]} {
  const ran: string[] = []
  const runner: CommandRunner = {
    async exec(command) {
      ran.push(command)
      const found = answers.find(([prefix]) => command.startsWith(prefix))
      return {code: 0, stdout: '', stderr: '', ...found?.[1]}
    },
  }
  return {host: new RemoteHost(runner, dryRun), ran}
}

const SECRET = '0b6c3f2e-7d41-4a8e-9c55-1f2e3d4c5b6a'
const FINGERPRINT = Array.from({length: 32}, () => 'AB').join(':')

describe('templates', () => {
  const settings = {storage: 'local-lvm', bridge: 'vmbr0', imageDir: '/var/lib/vz/template/cache', vendorSnippet: 'local:snippets/outpost-vendor.yaml'}

  it('keeps a finished template, recreates an unfinished one, refuses a VMID held by another VM', async () => {
    const {host} = scriptedHost([
      ['qm config 9000', {stdout: 'name: ubuntu-24.04-cloudinit\ntemplate: 1\n'}],
      ['qm config 9001', {stdout: 'name: ubuntu-22.04-cloudinit\n'}],
    ])
    const vms = [{vmid: 9000, name: 'ubuntu-24.04-cloudinit'}, {vmid: 9001, name: 'ubuntu-22.04-cloudinit'}, {vmid: 9002, name: 'someone-elses'}]
    expect(await planTemplates(host, ['ubuntu-24.04', 'ubuntu-22.04'], vms, 9000)).toEqual([
      {image: 'ubuntu-24.04', vmid: 9000, name: 'ubuntu-24.04-cloudinit', action: 'keep'},
      {image: 'ubuntu-22.04', vmid: 9001, name: 'ubuntu-22.04-cloudinit', action: 'recreate'},
    ])
    await expect(planTemplates(host, ['debian-12'], vms, 9000)).rejects.toThrow(/VMID 9002.*someone-elses/)
  })

  it('a failure after qm create destroys the VM and says so', async () => {
    const {host, ran} = scriptedHost([
      ['test -s', {code: 0}],
      ['qm importdisk', {stdout: "Successfully imported disk as 'unused0:local-lvm:vm-9000-disk-0'\n"}],
      ['qm template', {code: 255, stderr: 'unable to convert: storage does not support templates'}],
    ])
    await expect(createTemplate(host, {image: 'ubuntu-24.04', vmid: 9000, name: 'ubuntu-24.04-cloudinit', action: 'create'}, settings)).rejects.toThrow(
      /`qm template 9000`[\s\S]*storage does not support templates[\s\S]*VM 9000 was destroyed/,
    )
    expect(ran.at(-1)).toBe('qm destroy 9000 --purge 1 --destroy-unreferenced-disks 1')
  })

  it('a dry run records the commands and runs none of them', async () => {
    const {host, ran} = scriptedHost([['test -s', {code: 1}]], true)
    await createTemplate(host, {image: 'debian-12', vmid: 9002, name: 'debian-12-cloudinit', action: 'create'}, settings)
    expect(ran.every((command) => /^(test|sh -c 'command -v)/.test(command))).toBe(true)
    expect(host.changes).toContain('wget -q -O /var/lib/vz/template/cache/debian-12-genericcloud-amd64.qcow2.part https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2')
    expect(host.changes).toContain('qm set 9002 --scsi0 local-lvm:vm-9002-disk-0')
  })
})

describe('API access', () => {
  const settings = {
    role: 'OutpostAgent',
    user: 'outpost@pve',
    tokenName: 'agent',
    pveMajor: 8,
    knownSecretWorks: false,
    pool: 'outpost',
    node: 'pve',
    bridge: 'vmbr0',
    storage: 'local-lvm',
    templateVmids: [9000],
  }
  const scopedAcls = JSON.stringify(
    ['/pool/outpost', '/nodes/pve', '/sdn/zones/localnetwork/vmbr0'].map((path) => ({path, roleid: 'OutpostAgent', type: 'user', ugid: 'outpost@pve', propagate: 1})),
  )

  it('creates role, pool, user, ACLs and token, and reads the secret from the JSON answer', async () => {
    const {host} = scriptedHost([
      ['pveum role list', {stdout: '[{"roleid":"Administrator","privs":"Sys.Modify","special":1}]'}],
      ['pveum user list', {stdout: '[{"userid":"root@pam","enable":1}]'}],
      ['pveum pool list', {stdout: '[]'}],
      ['pveum acl list', {stdout: '[]'}],
      ['pveum user token add', {stdout: `{"full-tokenid":"outpost@pve!agent","info":{"privsep":"0"},"value":"${SECRET}"}`}],
    ])
    expect(await ensureApiAccess(host, settings)).toEqual({role: 'created', pool: 'created', user: 'created', acl: 'created', token: 'created', tokenId: 'outpost@pve!agent', secret: SECRET})
    // The token's rights: the pool (with the template and its storage), the node's status, the bridge's zone; never /.
    expect(host.changes).toContain("pveum pool add outpost --comment 'Outpost: the templates and the VMs the agent rents out'")
    expect(host.changes).toContain('pveum pool modify outpost --vms 9000 --storage local-lvm')
    expect(host.changes.filter((command) => command.startsWith('pveum acl'))).toEqual([
      'pveum acl modify /pool/outpost --users outpost@pve --roles OutpostAgent --propagate 1',
      'pveum acl modify /nodes/pve --users outpost@pve --roles OutpostAgent --propagate 1',
      'pveum acl modify /sdn/zones/localnetwork/vmbr0 --users outpost@pve --roles OutpostAgent --propagate 1',
    ])
  })

  it('PVE 7 has no SDN zone to grant on', async () => {
    const {host} = scriptedHost([['pveum role list', {stdout: '[]'}], ['pveum user list', {stdout: '[]'}], ['pveum pool list', {stdout: '[]'}], ['pveum acl list', {stdout: '[]'}], ['pveum user token add', {stdout: `{"full-tokenid":"outpost@pve!agent","value":"${SECRET}"}`}]])
    await ensureApiAccess(host, {...settings, pveMajor: 7})
    expect(host.changes.filter((command) => command.startsWith('pveum acl'))).toEqual([
      'pveum acl modify /pool/outpost --users outpost@pve --roles OutpostAgent --propagate 1',
      'pveum acl modify /nodes/pve --users outpost@pve --roles OutpostAgent --propagate 1',
    ])
  })

  it('fixes a role whose privileges drifted, scopes a grant on / down to the pool, and replaces a token whose secret is lost', async () => {
    const {host} = scriptedHost([
      ['pveum role list', {stdout: '[{"roleid":"OutpostAgent","privs":"VM.Audit,Sys.Modify","special":0}]'}],
      ['pveum user list', {stdout: '[{"userid":"outpost@pve"}]'}],
      ['pveum pool list', {stdout: '[{"poolid":"outpost"}]'}],
      ['pvesh get /pools/outpost', {stdout: '{"members":[{"id":"qemu/9000","type":"qemu","vmid":9000,"node":"pve"}]}'}],
      ['pveum acl list', {stdout: '[{"path":"/","roleid":"OutpostAgent","type":"user","ugid":"outpost@pve","propagate":1}]'}],
      ['pveum user token list', {stdout: '[{"tokenid":"agent","privsep":0}]'}],
      ['pveum user token add', {stdout: `{"full-tokenid":"outpost@pve!agent","value":"${SECRET}"}`}],
    ])
    const result = await ensureApiAccess(host, settings)
    expect(result).toMatchObject({role: 'updated', pool: 'updated', user: 'unchanged', acl: 'updated', token: 'replaced', secret: SECRET})
    expect(host.changes[0]).toMatch(/^pveum role modify OutpostAgent --privs Datastore\.AllocateSpace,/)
    expect(host.changes).toContain('pveum pool modify outpost --storage local-lvm')
    expect(host.changes).toContain('pveum acl delete / --users outpost@pve --roles OutpostAgent')
    expect(host.changes).toContain('pveum user token remove outpost@pve agent')
  })

  it('changes nothing when the pool, its members and the scoped grants are there', async () => {
    const {host} = scriptedHost([
      ['pveum role list', {stdout: '[]'}],
      ['pveum user list', {stdout: '[{"userid":"outpost@pve"}]'}],
      ['pveum pool list', {stdout: '[{"poolid":"outpost"}]'}],
      ['pvesh get /pools/outpost', {stdout: '{"members":[{"type":"qemu","vmid":9000},{"type":"storage","storage":"local-lvm"}]}'}],
      ['pveum acl list', {stdout: scopedAcls}],
      ['pveum user token list', {stdout: '[{"tokenid":"agent"}]'}],
    ])
    expect(await ensureApiAccess(host, {...settings, knownSecretWorks: true})).toMatchObject({pool: 'unchanged', acl: 'unchanged', token: 'unchanged'})
    expect(host.changes.filter((command) => !command.startsWith('pveum role'))).toEqual([])
  })

  it('a token answer without a proper secret is an error naming the field', async () => {
    const {host} = scriptedHost([
      ['pveum role list', {stdout: '[]'}],
      ['pveum user list', {stdout: '[]'}],
      ['pveum pool list', {stdout: '[]'}],
      ['pveum acl list', {stdout: '[]'}],
      ['pveum user token add', {stdout: '{"full-tokenid":"outpost@pve!agent","value":"secret"}'}],
    ])
    await expect(ensureApiAccess(host, settings)).rejects.toThrow(/user token add.*value: expected the secret/)
  })
})

describe('outpost.toml', () => {
  const values: ProxmoxConfigValues = {
    endpoint: 'https://api.example.net',
    keyFile: 'agent.key',
    host: 'pve.example.net',
    port: 8006,
    tokenId: 'outpost@pve!agent',
    tokenSecret: SECRET,
    tlsFingerprint: FINGERPRINT,
    node: 'pve',
    templateVmid: 9000,
    pool: 'outpost',
  }

  it('a fresh config validates, and the wizard\'s own edit of it changes nothing', () => {
    const fresh = configText(undefined, values)
    const config = validateConfig(parseToml(fresh, 'outpost.toml'), 'outpost.toml', {})
    expect(config.provisioner).toMatchObject({type: 'proxmox', proxmox: {host: 'pve.example.net', token_secret: SECRET, template_vmid: 9000, clone: 'linked'}})
    expect(configText(fresh, values)).toBe(fresh)
  })

  it('an existing config keeps its other lines and gains the section after [provisioner]', () => {
    const existing = '# mine\n[marketplace]\nendpoint = "http://old"\n\n[provisioner]\ntype = "local"\n\n[provider]\nname = "Acme"\ncontact_email = "ops@acme.example"\n'
    const text = configText(existing, values)
    expect(text).toContain('# mine')
    expect(text.indexOf('[provisioner.proxmox]')).toBeLessThan(text.indexOf('[provider]'))
    expect(validateConfig(parseToml(text, 'x'), 'x', {})).toMatchObject({marketplace: {endpoint: 'https://api.example.net'}, provider: {name: 'Acme'}, provisioner: {type: 'proxmox'}})
  })

  it('writes with mode 0600 and a backup, and leaves an identical file alone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-setup-unit-'))
    const file = join(dir, 'outpost.toml')
    writeFileSync(file, '[marketplace]\nendpoint = "http://old"\n\n[provisioner]\ntype = "local"\n')
    const first = writeConfig(file, values, false)
    expect(first.status).toBe('updated')
    expect(readFileSync(first.backup as string, 'utf8')).toContain('http://old')
    expect(writeConfig(file, values, false)).toEqual({file, status: 'unchanged'})
    expect(writeConfig(file, {...values, templateVmid: 9001}, true)).toEqual({file, status: 'updated'})
    expect(readFileSync(file, 'utf8')).toContain('template_vmid = 9000')
  })
})

describe('host key trust', () => {
  const seen = 'SHA256:' + 'b'.repeat(43)

  it('a given fingerprint is the only one accepted', async () => {
    const {decide} = hostKeyDecision({hostId: 'h:22', knownHostsFile: '/nonexistent', expected: seen})
    await expect(decide(seen)).resolves.toBe(true)
    await expect(decide('SHA256:' + 'c'.repeat(43))).rejects.toThrow(/HOST KEY MISMATCH/)
  })

  it('a remembered key must match; an unknown one needs a person or the flag', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'outpost-known-')), 'known_hosts')
    await expect(hostKeyDecision({hostId: 'h:22', knownHostsFile: file}).decide(seen)).rejects.toThrow(/unknown.*no terminal/)
    const asked = hostKeyDecision({hostId: 'h:22', knownHostsFile: file, confirm: async () => true})
    await expect(asked.decide(seen)).resolves.toBe(true)
    expect(asked.source()).toBe('confirmed')
    rememberHost(file, 'h:22', seen)
    const known = hostKeyDecision({hostId: 'h:22', knownHostsFile: file})
    await expect(known.decide(seen)).resolves.toBe(true)
    expect(known.source()).toBe('known')
    await expect(known.decide('SHA256:' + 'd'.repeat(43))).rejects.toThrow(/remembers/)
  })

  it('a malformed fingerprint flag is a usage error', () => {
    expect(() => hostKeyDecision({hostId: 'h:22', knownHostsFile: '/nonexistent', expected: 'MD5:aa:bb'})).toThrow(/not an SSH SHA-256/)
  })
})
