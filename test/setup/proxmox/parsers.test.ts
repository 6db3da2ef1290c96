import {describe, expect, it} from 'vitest'

import {
  parseBridges,
  parseImportedVolume,
  parseNodeName,
  parseOpensslFingerprint,
  parsePveVersion,
  parsePvesmStatus,
  parseQmConfig,
  parseQmList,
} from '../../../src/setup/proxmox/host-facts.js'
import {parsePveum, rolePrivileges} from '../../../src/setup/proxmox/api-access.js'
import {shellQuote} from '../../../src/setup/proxmox/ssh.js'
import {z} from 'zod'

describe('parsers of the Proxmox tools\' output', () => {
  it('pveversion', () => {
    expect(parsePveVersion('pve-manager/8.2.4/faa83925c9641325 (running kernel: 6.8.12-1-pve)\n')).toEqual({version: '8.2.4', major: 8})
    expect(parsePveVersion('pve-manager/9.0.3/abc (running kernel: 6.14.8-2-pve)')).toEqual({version: '9.0.3', major: 9})
    expect(() => parsePveVersion('bash: pveversion: command not found')).toThrow(/pveversion.*expected "pve-manager/)
  })

  it('the node name is the host name up to its first dot', () => {
    expect(parseNodeName('pve1.example.net\n')).toBe('pve1')
    expect(() => parseNodeName('not a name')).toThrow(/hostname/)
  })

  it('pvesm status: active storages with their free space', () => {
    const output = [
      'Name             Type     Status           Total            Used       Available        %',
      'local             dir     active        98497780        17412412        76035828   17.68%',
      'local-lvm     lvmthin     active       832888832        52428800       780460032    6.29%',
      'nfs-backup        nfs   inactive               0               0               0    0.00%',
    ].join('\n')
    expect(parsePvesmStatus(output)).toEqual([
      {name: 'local', type: 'dir', availableGb: 72},
      {name: 'local-lvm', type: 'lvmthin', availableGb: 744},
    ])
    expect(() => parsePvesmStatus('storage list:\nlocal dir')).toThrow(/pvesm status.*header/)
    expect(() => parsePvesmStatus('Name Type Status Total Used Available %\nlocal dir active')).toThrow(/row 1/)
  })

  it('bridges from ip -json', () => {
    expect(parseBridges('[{"ifindex":3,"ifname":"vmbr1"},{"ifindex":4,"ifname":"vmbr0","operstate":"UP"}]')).toEqual(['vmbr0', 'vmbr1'])
    expect(parseBridges('')).toEqual([])
    expect(() => parseBridges('[{"name":"vmbr0"}]')).toThrow(/ifname/)
    expect(() => parseBridges('vmbr0')).toThrow(/not JSON/)
  })

  it('qm list and qm config', () => {
    const list = '      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID       \n       100 web                  running    2048              32.00 1234      \n      9000 ubuntu-24.04-cloudinit stopped 2048 3.50 0\n'
    expect(parseQmList(list)).toEqual([{vmid: 100, name: 'web'}, {vmid: 9000, name: 'ubuntu-24.04-cloudinit'}])
    expect(parseQmList('')).toEqual([])
    expect(() => parseQmList('ID NAME\n')).toThrow(/qm list/)
    expect(parseQmConfig('boot: order=scsi0\nname: tpl\ntemplate: 1\nscsi0: local-lvm:base-9000-disk-0,size=3584M\n')).toMatchObject({template: '1', boot: 'order=scsi0'})
    expect(() => parseQmConfig('garbage line')).toThrow(/qm config/)
  })

  it('qm importdisk names the imported volume', () => {
    expect(parseImportedVolume("importing disk 'x.img' to VM 9000 ...\nSuccessfully imported disk as 'unused0:local-lvm:vm-9000-disk-0'\n")).toBe('local-lvm:vm-9000-disk-0')
    expect(parseImportedVolume("Successfully imported disk as 'unused0:local:9000/vm-9000-disk-0.raw'")).toBe('local:9000/vm-9000-disk-0.raw')
    expect(() => parseImportedVolume('transferred 2.2 GiB')).toThrow(/importdisk/)
  })

  it('openssl fingerprints, in OpenSSL 3 and 1.1 spelling', () => {
    const hex = Array.from({length: 32}, (_, index) => index.toString(16).padStart(2, '0').toUpperCase()).join(':')
    expect(parseOpensslFingerprint(`sha256 Fingerprint=${hex}\n`)).toBe(hex)
    expect(parseOpensslFingerprint(`SHA256 Fingerprint=${hex.toLowerCase()}`)).toBe(hex)
    expect(() => parseOpensslFingerprint('Could not open file')).toThrow(/Fingerprint=/)
  })

  it('pveum JSON answers are parsed by schema, and a mismatch names the field', () => {
    const schema = z.array(z.object({userid: z.string()}))
    expect(parsePveum('user list', '[{"userid":"root@pam"}]', schema)).toEqual([{userid: 'root@pam'}])
    expect(() => parsePveum('user list', '[{"user":"root@pam"}]', schema)).toThrow(/pveum user list.*0\.userid/)
    expect(() => parsePveum('user list', 'permission denied', schema)).toThrow(/not JSON/)
  })

  it('the role holds only what the provisioner uses, by release', () => {
    expect(rolePrivileges(8)).toContain('VM.Monitor')
    expect(rolePrivileges(8)).toContain('SDN.Use')
    expect(rolePrivileges(9)).toContain('VM.GuestAgent.Audit')
    expect(rolePrivileges(9)).not.toContain('VM.Monitor')
    expect(rolePrivileges(7)).not.toContain('SDN.Use')
    for (const privilege of ['Sys.Modify', 'Permissions.Modify', 'User.Modify', 'Datastore.Allocate', 'Sys.Console']) expect(rolePrivileges(8)).not.toContain(privilege)
  })

  it('arguments are quoted for the remote shell', () => {
    expect(shellQuote('local-lvm:cloudinit')).toBe('local-lvm:cloudinit')
    expect(shellQuote('Outpost agent')).toBe(`'Outpost agent'`)
    expect(shellQuote(`it's; rm -rf /`)).toBe(`'it'\\''s; rm -rf /'`)
  })
})
