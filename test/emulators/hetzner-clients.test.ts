import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {HetznerEmulator} from './hetzner/emulator.js'

/**
 * The Hetzner Cloud emulator against Hetzner's own clients (Debian's hcloud-cli and python3-hcloud), and plain HTTP
 * for the wire details they rely on.
 */

const PYTHON = '/usr/bin/python3'
const SCRIPT = fileURLToPath(new URL('./clients/hcloud_path.py', import.meta.url))
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFhZCSOcY0K2DWaxbEmHYsHvG+sO5GVop+G3rqGlDimd renter@example'

const emulator = new HetznerEmulator()
const dir = mkdtempSync(join(tmpdir(), 'outpost-hcloud-'))

beforeAll(() => emulator.start())
afterAll(async () => {
  await emulator.stop()
  rmSync(dir, {recursive: true, force: true})
})

/** The official CLI, pointed at the emulator (HCLOUD_ENDPOINT) with a config file of its own. */
async function hcloud(...args: string[]): Promise<string> {
  const result = await execa('hcloud', args, {
    env: {HCLOUD_ENDPOINT: emulator.baseUrl, HCLOUD_TOKEN: emulator.token, HCLOUD_CONFIG: join(dir, 'hcloud.toml')},
    reject: false,
  })
  expect(result.exitCode, `hcloud ${args.join(' ')}: ${String(result.stderr)}`).toBe(0)
  return String(result.stdout)
}

const lines = (text: string) => text.trim().split('\n').map((line) => line.trim().split(/\s+/))

describe('hcloud (hcloud-cli) drives the emulator', () => {
  it('lists locations, server types with prices and images; creates a key and servers by names and by ids; waits; describes; selects by labels; deletes', async () => {
    expect(lines(await hcloud('location', 'list', '-o', 'noheader', '-o', 'columns=id,name'))).toEqual([['1', 'fsn1'], ['2', 'nbg1'], ['3', 'hel1'], ['4', 'ash'], ['5', 'hil']])
    // describe looks the type up with ?name=: the answer must be that type, not the first of the list.
    const cx22 = JSON.parse(await hcloud('server-type', 'describe', 'cx22', '-o', 'json')) as {id: number; name: string; prices: {location: string; price_hourly: {gross: string}}[]}
    expect(cx22).toMatchObject({id: 104, name: 'cx22'})
    expect(cx22.prices.map((price) => [price.location, price.price_hourly.gross])).toEqual([['fsn1', '0.0060000000'], ['nbg1', '0.0060000000'], ['hel1', '0.0058000000']])
    expect(await hcloud('location', 'describe', 'hel1')).toMatch(/^Name:\s+hel1$/m)
    expect(lines(await hcloud('image', 'list', '-o', 'noheader', '-o', 'columns=id,name'))).toEqual([['161547269', 'ubuntu-24.04'], ['161547270', 'ubuntu-24.04'], ['114690387', 'debian-12']])
    writeFileSync(join(dir, 'renter.pub'), `${SSH_KEY}\n`)
    await hcloud('ssh-key', 'create', '--name', 'renter', '--public-key-from-file', join(dir, 'renter.pub'))
    const keyId = [...emulator.sshKeys.values()].find((key) => key.name === 'renter')?.id

    // By names: the CLI resolves them and sends the image and type as ids; by ids: it sends them as given.
    expect(await hcloud('server', 'create', '--name', 'by-names', '--type', 'cx22', '--image', 'ubuntu-24.04', '--location', 'fsn1', '--ssh-key', 'renter', '--label', 'env=prod', '--label', 'role=web')).toMatch(/^Server \d+ created$/m)
    expect(await hcloud('server', 'create', '--name', 'by-ids', '--type', '104', '--image', '114690387', '--location', '2', '--ssh-key', String(keyId), '--label', 'env=prod', '--label', 'role=db')).toMatch(/^Server \d+ created$/m)
    const creates = emulator.requests.filter((request) => request.method === 'POST' && request.path === '/v1/servers')
    expect(creates.map((request) => request.status)).toEqual([201, 201])
    // The CLI waited for each create action.
    expect(emulator.requests.some((request) => request.path === '/v1/actions' && request.query.id !== undefined)).toBe(true)

    const described = JSON.parse(await hcloud('server', 'describe', 'by-ids', '-o', 'json')) as {status: string; image: {name: string}; server_type: {name: string}; datacenter: {location: {name: string}}; labels: Record<string, string>}
    expect(described).toMatchObject({status: 'running', image: {name: 'debian-12'}, server_type: {name: 'cx22'}, datacenter: {location: {name: 'nbg1'}}, labels: {env: 'prod', role: 'db'}})
    expect(emulator.servers.get([...emulator.servers.values()].find((server) => server.name === 'by-names')?.id ?? 0)?.sshKeys).toEqual([keyId])

    const selected = async (selector: string) => lines(await hcloud('server', 'list', '-o', 'noheader', '-o', 'columns=name', '-l', selector)).flat().sort()
    expect(await selected('env=prod')).toEqual(['by-ids', 'by-names'])
    expect(await selected('role in (web,cache)')).toEqual(['by-names'])
    expect(await selected('env=prod,role notin (web)')).toEqual(['by-ids'])

    await hcloud('server', 'delete', 'by-names')
    await hcloud('server', 'delete', 'by-ids')
    await hcloud('ssh-key', 'delete', 'renter')
    expect(emulator.sshKeys.size).toBe(0)
    // This CLI doesn't wait for delete actions: the servers show `deleting` until theirs end.
    while ((await hcloud('server', 'list', '-o', 'noheader')) !== '') await new Promise((resolve) => setTimeout(resolve, 50))
  })
})

describe('hcloud-python (python3-hcloud) drives the emulator', () => {
  it('reads locations, prices and images; creates by ids and by names; waits; reads actions; selects by labels; refuses a bad label; deletes', async () => {
    const result = await execa(PYTHON, [SCRIPT], {env: {HCLOUD_ENDPOINT: emulator.baseUrl, HCLOUD_TOKEN: emulator.token, SSH_PUBKEY: SSH_KEY}, reject: false})
    expect(result.exitCode, String(result.stderr)).toBe(0)
    const seen = JSON.parse(String(result.stdout)) as Record<string, unknown>
    expect(seen.locations).toContainEqual([4, 'ash', 'us-east'])
    expect((seen.server_types as Record<string, unknown>).cx22).toEqual([['fsn1', '0.0060000000'], ['nbg1', '0.0060000000'], ['hel1', '0.0058000000']])
    expect(seen).toMatchObject({cx22: 104, fsn1: 1, image_by_id: 'debian-12', key_by_id: 'renter'})
    expect(seen.images).toEqual([[161547269, 'ubuntu-24.04'], [161547270, 'ubuntu-24.04']])
    // By ids (numbers in the JSON body) and by names (an image name takes the server type's architecture).
    expect(seen['by-ids']).toEqual({status: 'running', server_type: 'cx22', image: [161547269, 'ubuntu-24.04'], location: 'fsn1', ipv4: expect.stringMatching(/^203\.0\.113\./), root_password: null, actions: [['create_server', 'success']]})
    expect(seen['by-names']).toMatchObject({server_type: 'cax11', image: [161547270, 'ubuntu-24.04'], location: 'nbg1'})
    expect(seen.selected).toEqual({
      'env=prod': ['by-ids', 'by-names'],
      'role in (web,cache)': ['by-ids'],
      'role notin (web)': ['by-names'],
      'env=prod,role!=db': ['by-ids'],
      '!role': [],
      role: ['by-ids', 'by-names'],
    })
    expect(seen.bad_label).toEqual(['invalid_input', 'labels'])
    expect(seen).toMatchObject({key_deleted: true, left: [0, 0]})
  })
})

describe('the emulator answers as the API reference says', () => {
  const api = (method: string, path: string, body?: unknown) =>
    fetch(`${emulator.baseUrl}${path}`, {method, headers: {authorization: `Bearer ${emulator.token}`, ...(body === undefined ? {} : {'content-type': 'application/json'})}, body: body === undefined ? undefined : JSON.stringify(body)})

  it('answers an empty 204 without a content type', async () => {
    const created = (await (await api('POST', '/ssh_keys', {name: 'gone', public_key: SSH_KEY})).json()) as {ssh_key: {id: number}}
    const deleted = await api('DELETE', `/ssh_keys/${created.ssh_key.id}`)
    expect(deleted.status).toBe(204)
    expect(deleted.headers.get('content-type')).toBeNull()
    expect(await deleted.text()).toBe('')
  })

  it('validates label keys and values (63 characters, alphanumeric ends, an optional DNS prefix, hetzner.cloud/ reserved)', async () => {
    const create = (labels: Record<string, string>) => api('POST', '/ssh_keys', {name: `k-${Object.keys(labels).join('-').replaceAll('/', '_')}`, public_key: SSH_KEY, labels})
    const refused: Record<string, string>[] = [{key: 'x'.repeat(64)}, {key: 'ends-with-dash-'}, {key: 'with space'}, {'bad key': 'v'}, {'hetzner.cloud/x': 'v'}, {'-leading': 'v'}]
    for (const labels of refused) {
      const answer = await create(labels)
      expect(answer.status, JSON.stringify(labels)).toBe(422)
      expect(((await answer.json()) as {error: {code: string}}).error.code).toBe('invalid_input')
    }
    const fine = await create({'example.com/my': 'label', 'just-a-key': '', 'outpost.contract': 'a'.repeat(32)})
    expect(fine.status).toBe(201)
    const {ssh_key: key} = (await fine.json()) as {ssh_key: {id: number}}
    await api('DELETE', `/ssh_keys/${key.id}`)
  })

  it('reads every resource by id, filters types and locations by name, and takes action ids only', async () => {
    for (const [path, key, name] of [['/images/114690387', 'image', 'debian-12'], ['/server_types/104', 'server_type', 'cx22'], ['/locations/3', 'location', 'hel1']] as const) {
      const answer = (await (await api('GET', path)).json()) as Record<string, {name: string}>
      expect(answer[key]?.name, path).toBe(name)
    }
    expect((await api('GET', '/images/1')).status).toBe(404)
    expect(((await (await api('GET', '/server_types?name=cx22')).json()) as {server_types: {name: string}[]}).server_types.map((type) => type.name)).toEqual(['cx22'])
    expect(((await (await api('GET', '/locations?name=ash')).json()) as {locations: {name: string}[]}).locations.map((location) => location.name)).toEqual(['ash'])
    expect((await api('GET', '/actions')).status).toBe(422)
    expect((await api('GET', '/servers?label_selector=role%20in%20(web')).status).toBe(422)
  })
})
