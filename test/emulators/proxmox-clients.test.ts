import {fileURLToPath} from 'node:url'
import {execa} from 'execa'
import {Agent, fetch} from 'undici'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {UPID} from '../../src/provisioners/proxmox/connection.js'
import {ProxmoxEmulator} from './proxmox/emulator.js'

/**
 * The Proxmox VE emulator against clients nobody here wrote: proxmoxer (Debian's python3-proxmoxer) through the
 * backend's whole path, and plain HTTPS requests for the wire details PVE's sources fix (see the emulator's comments).
 */

const PYTHON = '/usr/bin/python3'
const SCRIPT = fileURLToPath(new URL('./clients/proxmoxer_path.py', import.meta.url))
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEg2Yb0Z8Yh8sQ1GQf3m7m0rQG1lF4pV0Qm2mXW0mYzV renter@example'

// pvestatd passes only when the test says so: the cluster list shows what a real host shows between passes.
const emulator = new ProxmoxEmulator({statusIntervalMs: 3_600_000})
const insecure = new Agent({connect: {rejectUnauthorized: false}})

/** What clients/proxmoxer_path.py prints, step by step. */
interface ProxmoxerPath {
  version: unknown
  nodes: unknown[]
  nextid: number
  clone_upid: string
  clone_in_progress: unknown[]
  clone_status: unknown
  config_after_clone: Record<string, unknown>
  config: Record<string, unknown>
  resize_status: unknown
  disk: string
  start_status: unknown
  agent_errors: unknown[]
  interfaces: {result: {name: string}[]}
  status: unknown
  shutdown_status: unknown
  status_after_shutdown: string
  stop_status: unknown
  delete_status: unknown
  left: unknown[]
  refused: unknown[]
}

interface Answer {
  status: number
  reason: string
  body: {data: unknown; errors?: Record<string, string>}
}

async function call(method: string, path: string, options: {form?: Record<string, string>; json?: unknown; authorization?: string} = {}): Promise<Answer> {
  const headers: Record<string, string> = {authorization: options.authorization ?? `PVEAPIToken=${emulator.tokenId}=${emulator.tokenSecret}`}
  let body: string | undefined
  if (options.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded'
    body = new URLSearchParams(options.form).toString()
  } else if (options.json !== undefined) {
    headers['content-type'] = 'application/json'
    body = JSON.stringify(options.json)
  }
  const response = await fetch(`https://127.0.0.1:${emulator.port}/api2/json${path}`, {method, headers, body, dispatcher: insecure})
  return {status: response.status, reason: response.statusText, body: (await response.json()) as Answer['body']}
}

async function waitTask(upid: string): Promise<Record<string, unknown>> {
  for (;;) {
    const {body} = await call('GET', `/nodes/pve/tasks/${encodeURIComponent(upid)}/status`)
    const status = body.data as Record<string, unknown>
    if (status.status === 'stopped') return status
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** A stopped guest made outside the API, to configure. */
function guest(vmid: number): void {
  emulator.vms.set(vmid, {vmid, node: 'pve', status: 'stopped', config: {name: `guest-${vmid}`, cores: 1, memory: '1024', scsi0: `local-lvm:vm-${vmid}-disk-0,size=8G`, digest: 'd0'}})
}

beforeAll(() => emulator.start())
afterAll(async () => {
  await emulator.stop()
  await insecure.close()
})

describe('proxmoxer (python3-proxmoxer) drives the emulator through the backend\'s whole path', () => {
  it('version, nodes, nextid, clone, task status, config, resize, start, guest agent, status, shutdown, stop, delete', async () => {
    // The clone runs until proxmoxer has listed it in progress: with its 40 ms a busy machine could end it sooner.
    const cloneMs = emulator.durations.clone
    emulator.durations.clone = 3_600_000
    emulator.afterAnswer = (request) => {
      if (request.method !== 'GET' || request.path !== '/api2/json/cluster/resources') return
      for (const task of emulator.tasks.values()) if (task.type === 'qmclone' && task.status === 'running') emulator.finishTask(task.upid)
    }
    const result = await execa(PYTHON, [SCRIPT], {
      env: {
        PVE_HOST: '127.0.0.1',
        PVE_PORT: String(emulator.port),
        PVE_USER: emulator.tokenId.split('!')[0],
        PVE_TOKEN_NAME: emulator.tokenId.split('!')[1],
        PVE_TOKEN_VALUE: emulator.tokenSecret,
        PVE_NODE: 'pve',
        PVE_TEMPLATE: '9000',
        SSH_PUBKEY: SSH_KEY,
      },
      reject: false,
    }).finally(() => {
      emulator.durations.clone = cloneMs
      emulator.afterAnswer = undefined
    })
    expect(result.exitCode, result.stderr).toBe(0)
    const seen = JSON.parse(result.stdout) as ProxmoxerPath
    expect(seen.version).toMatchObject({version: '8.2.4', release: '8.2'})
    expect(seen.nodes).toEqual([expect.objectContaining({id: 'node/pve', type: 'node', node: 'pve', status: 'online', cpu: expect.any(Number), maxcpu: 16, disk: expect.any(Number), maxdisk: expect.any(Number), uptime: expect.any(Number), ssl_fingerprint: emulator.fingerprint})])
    expect(UPID.safeParse(seen.clone_upid).success).toBe(true)
    // A clone in progress, as pve-manager lists it before pvestatd's next pass: its lock, no name, status unknown.
    expect(seen.clone_in_progress).toEqual([{id: `qemu/${seen.nextid}`, vmid: seen.nextid, node: 'pve', type: 'qemu', status: 'unknown', lock: 'clone'}])
    expect(seen.clone_status).toMatchObject({status: 'stopped', exitstatus: 'OK', type: 'qmclone', id: '9000', user: 'outpost@pve', tokenid: 'agent', node: 'pve'})
    expect(seen.config_after_clone).toMatchObject({name: 'outpost-proxmoxer', scsi0: `local-lvm:vm-${seen.nextid}-disk-0,size=10G`})
    expect(seen.config_after_clone.lock).toBeUndefined()
    expect(seen.config).toMatchObject({cores: 2, memory: '2048', ciuser: 'outpost', cipassword: '**********', ipconfig0: 'ip=dhcp', agent: '1', tags: 'outpost'})
    expect(decodeURIComponent(String(seen.config.sshkeys))).toBe(`${SSH_KEY}\n`)
    expect(seen.resize_status).toMatchObject({exitstatus: 'OK', type: 'resize'})
    expect(seen.disk).toMatch(/,size=16G$/)
    expect(seen.start_status).toMatchObject({exitstatus: 'OK', type: 'qmstart'})
    expect(seen.agent_errors).toEqual([[500, 'QEMU guest agent is not running']])
    expect(seen.interfaces.result.map((item) => item.name)).toEqual(['lo', 'eth0'])
    expect(seen.status).toMatchObject({status: 'running', name: 'outpost-proxmoxer', cpus: 2, agent: 1})
    expect(seen.shutdown_status).toMatchObject({exitstatus: 'OK', type: 'qmshutdown'})
    expect(seen.status_after_shutdown).toBe('stopped')
    expect(seen.stop_status).toMatchObject({exitstatus: 'OK', type: 'qmstop'})
    expect(seen.delete_status).toMatchObject({exitstatus: 'OK', type: 'qmdestroy'})
    expect(seen.left).toEqual([])
    expect(seen.refused).toEqual([400, 'Parameter verification failed.'])
  })
})

describe('the emulator answers as PVE does (wire details from its sources)', () => {
  it('verifies every parameter PUT config takes, and answers all errors at once as 400 with errors per parameter', async () => {
    guest(200)
    const refused = await call('PUT', '/nodes/pve/qemu/200/config', {
      form: {cores: '0', memory: '8', ipconfig0: 'ip=10.0.0.5', ipconfig32: 'ip=dhcp', tags: 'outpost <b>x</b>', agent: 'maybe', sshkeys: 'ssh-ed25519 AAAA', colour: 'blue', onboot: 'true'},
    })
    expect(refused.status).toBe(400)
    expect(refused.reason).toBe('Parameter verification failed.')
    expect(refused.body.errors).toEqual({
      cores: 'value must have a minimum value of 1',
      memory: 'invalid format - format error\nmemory.current: value must have a minimum value of 16\n',
      ipconfig0: 'invalid format - format error\nipconfig0.ip: invalid format - value does not look like a valid ipv4 network configuration\n',
      tags: 'invalid format - invalid characters in tag',
      agent: "invalid format - format error\nagent.enabled: type check ('boolean') failed - got 'maybe'\n",
      sshkeys: 'invalid format - invalid urlencoded string: ssh-ed25519 AAAA',
      ipconfig32: 'property is not defined in schema and the schema does not allow additional properties',
      colour: 'property is not defined in schema and the schema does not allow additional properties',
      onboot: "type check ('boolean') failed - got 'true'",
    })
    expect(emulator.vms.get(200)?.config.cores).toBe(1)
    // A gateway needs an address: the property string's `requires`.
    expect((await call('PUT', '/nodes/pve/qemu/200/config', {form: {ipconfig0: 'gw=10.0.0.1'}})).body.errors).toEqual({
      ipconfig0: "invalid format - format error\nipconfig0.ip: missing property required by 'ipconfig0.gw'\n",
    })
  })

  it('takes what PVE takes: tags split on spaces, a ciuser PVE gives no format, booleans inside property strings as yes/on/true', async () => {
    guest(201)
    const accepted = await call('PUT', '/nodes/pve/qemu/201/config', {form: {tags: 'outpost renter;gpu', ciuser: 'a b', agent: 'enabled=yes,fstrim_cloned_disks=on', memory: 'current=4096', ipconfig0: 'ip=10.0.0.5/24,gw=10.0.0.1', ipconfig31: 'ip6=auto'}})
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(200)
    expect(emulator.vms.get(201)?.config).toMatchObject({tags: 'outpost renter;gpu', ciuser: 'a b', memory: 'current=4096'})
  })

  it('checks SSH keys with ssh-keygen and answers a bad one with a 500, as validate_ssh_public_keys dies', async () => {
    guest(202)
    const bad = await call('PUT', '/nodes/pve/qemu/202/config', {form: {sshkeys: encodeURIComponent('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAInotakey renter\n')}})
    expect([bad.status, bad.reason]).toEqual([500, 'SSH public key validation error'])
    const good = await call('PUT', '/nodes/pve/qemu/202/config', {form: {sshkeys: encodeURIComponent(`${SSH_KEY}\n\n`)}})
    expect(good.status).toBe(200)
  })

  it('takes booleans as 1/0 or JSON true/false only, and reads JSON bodies', async () => {
    guest(203)
    const word = await call('POST', '/nodes/pve/qemu/9000/clone', {form: {newid: '300', full: 'true'}})
    expect(word.body.errors).toEqual({full: "type check ('boolean') failed - got 'true'"})
    expect(emulator.vms.has(300)).toBe(false)
    const json = await call('PUT', '/nodes/pve/qemu/203/config', {json: {cores: 4, onboot: true, protection: false}})
    expect(json.status, JSON.stringify(json.body)).toBe(200)
    expect(emulator.vms.get(203)?.config).toMatchObject({cores: 4, onboot: '1', protection: '0'})
    const clone = await call('POST', '/nodes/pve/qemu/9000/clone', {json: {newid: 301, name: 'json-clone', full: true}})
    expect((await waitTask(String(clone.body.data))).exitstatus).toBe('OK')
    expect(emulator.vms.get(301)?.config.scsi0).toMatch(/^local-lvm:vm-301-disk-0,/)
  })

  it('never shows the cloud-init password', async () => {
    guest(204)
    await call('PUT', '/nodes/pve/qemu/204/config', {form: {cipassword: 'hunter2-hunter2'}})
    const config = (await call('GET', '/nodes/pve/qemu/204/config')).body.data as Record<string, unknown>
    expect(config.cipassword).toBe('**********')
    expect(JSON.stringify(config)).not.toContain('hunter2')
  })

  it('resizes by K, M, G or T, absolute or relative; checks the pattern, and fails shrinking in the task', async () => {
    guest(205)
    expect((await waitTask(String((await call('PUT', '/nodes/pve/qemu/205/resize', {form: {disk: 'scsi0', size: '+512M'}})).body.data))).exitstatus).toBe('OK')
    expect(emulator.vms.get(205)?.config.scsi0).toBe('local-lvm:vm-205-disk-0,size=8704M')
    expect((await waitTask(String((await call('PUT', '/nodes/pve/qemu/205/resize', {form: {disk: 'scsi0', size: '1T'}})).body.data))).exitstatus).toBe('OK')
    expect(emulator.vms.get(205)?.config.scsi0).toBe('local-lvm:vm-205-disk-0,size=1T')
    expect((await call('PUT', '/nodes/pve/qemu/205/resize', {form: {disk: 'scsi0', size: '10 GB'}})).body.errors).toEqual({size: 'value does not match the regex pattern'})
    expect((await call('PUT', '/nodes/pve/qemu/205/resize', {form: {disk: 'disk0', size: '10G'}})).body.errors?.disk).toMatch(/^value 'disk0' does not have a value in the enumeration 'ide0, /)
    expect((await waitTask(String((await call('PUT', '/nodes/pve/qemu/205/resize', {form: {disk: 'scsi0', size: '1G'}})).body.data))).exitstatus).toBe('shrinking disks is not supported')
  })

  it('answers a refused token after 3 s, as pve-http-server delays every unauthorized call', async () => {
    const started = performance.now()
    const refused = await call('GET', '/version', {authorization: `PVEAPIToken=${emulator.tokenId}=00000000-0000-0000-0000-000000000000`})
    // A lower bound only: load can make the answer later, never sooner.
    expect(performance.now() - started).toBeGreaterThanOrEqual(2900)
    expect([refused.status, refused.reason]).toEqual([401, 'authentication failure'])
  })

  it('serves the read routes a client walks: indexes, VM and task lists; a taken VMID is a parameter error', async () => {
    for (const path of ['/cluster', '/nodes/pve', '/nodes/pve/qemu', '/nodes/pve/qemu/9000', '/nodes/pve/qemu/9000/status', '/nodes/pve/tasks']) {
      const answer = await call('GET', path)
      expect(answer.status, path).toBe(200)
      expect(Array.isArray(answer.body.data), path).toBe(true)
    }
    expect((await call('GET', '/nodes/pve/qemu')).body.data).toContainEqual(expect.objectContaining({vmid: 9000, name: 'ubuntu-cloud', template: 1, status: 'stopped'}))
    expect((await call('GET', '/cluster/nextid?vmid=9000')).body.errors).toEqual({vmid: 'VM 9000 already exists'})
    expect((await call('GET', '/nodes/pve/tasks/UPID:nope/status')).body.errors).toEqual({upid: 'unable to parse worker upid'})
    expect((await call('GET', '/nodes/pve/frobnicate')).status).toBe(501)
  })

  it('lists a VM by its lock at once and by its name only after pvestatd\'s next pass', async () => {
    // The clone is held open until the test ends it: on a busy machine its 40 ms could pass between two calls.
    const cloneMs = emulator.durations.clone
    emulator.durations.clone = 3_600_000
    const clone = await call('POST', '/nodes/pve/qemu/9000/clone', {form: {newid: '310', name: 'renamed-later'}}).finally(() => {
      emulator.durations.clone = cloneMs
    })
    const listed = async () => ((await call('GET', '/cluster/resources?type=vm')).body.data as {vmid: number; name?: string; lock?: string; status: string}[]).find((item) => item.vmid === 310)
    expect(await listed()).toEqual({id: 'qemu/310', vmid: 310, node: 'pve', type: 'qemu', status: 'unknown', lock: 'clone'})
    emulator.takeStatusSnapshots()
    expect(await listed()).toMatchObject({name: 'VM 310', status: 'stopped', lock: 'clone'})
    emulator.finishTask(String(clone.body.data))
    await waitTask(String(clone.body.data))
    expect(await listed()).toMatchObject({name: 'VM 310'})
    expect((await listed())?.lock).toBeUndefined()
    emulator.takeStatusSnapshots()
    expect(await listed()).toMatchObject({name: 'renamed-later'})
  })

  it('writes task ids as PVE::UPID::encode does: 9 hex digits of pstart on a host up more than 497 days', async () => {
    const longUp = new ProxmoxEmulator({uptimeSeconds: 600 * 86_400, certificate: emulator.certificate})
    await longUp.start()
    try {
      const answer = await fetch(`https://127.0.0.1:${longUp.port}/api2/json/nodes/pve/qemu/9000/clone`, {
        method: 'POST',
        headers: {authorization: `PVEAPIToken=${longUp.tokenId}=${longUp.tokenSecret}`, 'content-type': 'application/x-www-form-urlencoded'},
        body: 'newid=100',
        dispatcher: insecure,
      })
      const upid = ((await answer.json()) as {data: string}).data
      expect(upid).toMatch(/^UPID:pve:[0-9A-F]{8}:[0-9A-F]{9}:[0-9A-F]{8}:qmclone:9000:outpost@pve!agent:$/)
      expect(UPID.safeParse(upid).success).toBe(true)
    } finally {
      await longUp.stop()
    }
  })
})
