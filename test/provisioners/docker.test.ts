import {execFileSync} from 'node:child_process'
import {createServer, request, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {mkdtempSync, rmSync} from 'node:fs'
import {createConnection} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {afterAll, describe, expect, it} from 'vitest'

import {DockerEngine} from '../../src/provisioners/docker/engine.js'
import {DockerProvisioner, PIDS_LIMIT, RENTER_CAPABILITIES} from '../../src/provisioners/docker/docker-provisioner.js'
import {ContainerCreated, ContainerInspect, ContainerList, NetworkList} from '../../src/provisioners/docker/schemas.js'
import {CONTRACT_LABEL, MANAGED_LABEL} from '../../src/provisioners/provisioner.js'
import {testDocker} from '../support/dockerd.js'
import {failure, settingsFrom} from '../support/provisioners.js'
import {contractFixture, provisionerContractSuite} from './contract-suite.js'

const docker = await testDocker()

if (!docker.available) {
  describe('docker provisioner', () => {
    it.skip(`skipped: no Docker engine can run here: ${docker.reason}`, () => {})
  })
} else {
  const {socket, image} = docker
  const engine = new DockerEngine(socket, 10_000)
  const signal = () => new AbortController().signal

  const provisioner = (overrides: Record<string, unknown> = {}) =>
    new DockerProvisioner(settingsFrom('docker', {socket, image, bind_address: '127.0.0.1', startup_timeout_seconds: 15, stop_timeout_seconds: 1, ...overrides}))

  const managed = async () =>
    (await engine.json('listing', ContainerList, {method: 'GET', path: '/containers/json', query: {all: true, filters: JSON.stringify({label: [`${MANAGED_LABEL}=true`]})}})) ?? []

  const inspect = (id: string) => engine.json('inspect', ContainerInspect, {method: 'GET', path: `/containers/${id}/json`, accept: [404]})
  const networksOf = async (contractId: string) =>
    (await engine.json('networks', NetworkList, {method: 'GET', path: '/networks', query: {filters: JSON.stringify({label: [`${CONTRACT_LABEL}=${contractId}`]})}})) ?? []

  /** Runs a command in a container, as a renter with a shell in it would. */
  const inContainer = (id: string, command: string) =>
    execFileSync('docker', ['-H', `unix://${socket}`, 'exec', id, 'sh', '-c', command], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000})
  const addressOf = (id: string) => execFileSync('docker', ['-H', `unix://${socket}`, 'inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', id], {encoding: 'utf8'}).trim()
  /** What a TCP connection from one container to an address gets: the banner when it reaches the service. */
  const reach = (from: string, address: string) => inContainer(from, `echo guess | nc -w 2 ${address} 22 2>&1; true`)

  /** Linux capability numbers (linux/capability.h) of the names Docker takes. */
  const CAPABILITY_BITS: Record<string, number> = {CHOWN: 0, DAC_OVERRIDE: 1, FOWNER: 3, KILL: 5, SETGID: 6, SETUID: 7, NET_BIND_SERVICE: 10, NET_RAW: 13, SYS_CHROOT: 18, AUDIT_WRITE: 29}

  /** Talks to the instance like a renter: reads the banner, sends the password, returns what it answered. */
  function login(port: number, password: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const connection = createConnection({host: '127.0.0.1', port})
      const lines: string[] = []
      createInterface({input: connection}).on('line', (line) => {
        lines.push(line)
        if (lines.length === 1) connection.write(password + '\n')
      })
      connection.on('close', () => resolve(lines))
      connection.on('error', reject)
      connection.setTimeout(5000, () => connection.destroy(new Error('no answer')))
    })
  }

  provisionerContractSuite('docker (a real Docker engine)', {
    create: () => provisioner(),
    failProvision: (contract) => {
      // More CPUs than the host has: the engine refuses the container at create, which no retry fixes.
      contract.cpu_cores = 512
      return {retryPossible: false}
    },
    countInstances: async () => (await managed()).length,
  })

  describe('Docker provisioner against a real engine', () => {
    it('makes the container from the contract: name, labels, CPU and memory limits, a published port, a working password', async () => {
      const contract = contractFixture({cpu_cores: 1, memory_mb: 256})
      const instance = await provisioner().provision(contract, signal())
      const container = await inspect(instance.externalId)
      expect(container?.Name).toBe(`/outpost-${contract.contract_id}`)
      expect(container?.Config.Labels).toMatchObject({[CONTRACT_LABEL]: contract.contract_id, [MANAGED_LABEL]: 'true'})
      expect(container?.HostConfig).toMatchObject({NanoCpus: 1e9, Memory: 256 * 1024 * 1024})
      // Renter root: a documented minimum of capabilities (no NET_RAW), no privilege gain through setuid, a pid limit,
      // and the contract's own network.
      const [network] = await networksOf(contract.contract_id)
      expect(network?.Name).toMatch(new RegExp(`^outpost-${contract.contract_id}-[0-9a-f]{8}$`))
      expect(container?.HostConfig).toMatchObject({
        CapDrop: ['ALL'],
        CapAdd: [...RENTER_CAPABILITIES],
        SecurityOpt: ['no-new-privileges:true'],
        PidsLimit: PIDS_LIMIT,
        NetworkMode: network?.Id,
      })
      const status = inContainer(instance.externalId, 'cat /proc/1/status')
      const bounding = BigInt('0x' + (/^CapBnd:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? 'ffffffffffffffff'))
      const expected = RENTER_CAPABILITIES.reduce((mask, name) => mask | (1n << BigInt(CAPABILITY_BITS[name] ?? 63)), 0n)
      expect(bounding).toBe(expected)
      expect(bounding & (1n << BigInt(CAPABILITY_BITS.NET_RAW ?? 0))).toBe(0n)
      expect(/^NoNewPrivs:\s*1$/m.test(status)).toBe(true)
      expect(container?.Config.Env).toContain(`OUTPOST_SSH_AUTHORIZED_KEYS=${contract.ssh_pubkey}`)
      expect(instance).toMatchObject({ipAddress: '127.0.0.1', credentials: {username: 'root'}})
      const password = instance.credentials?.password ?? ''
      expect(password.length).toBeGreaterThanOrEqual(20)
      expect(await login(instance.sshPort, password)).toEqual([`outpost-${contract.contract_id} ready`, 'welcome'])
      expect(await login(instance.sshPort, 'guess')).toEqual([`outpost-${contract.contract_id} ready`, 'denied'])
      await provisioner().terminate(instance)
    })

    it("gives each contract its own network: two contracts' containers can't reach each other", async () => {
      const made = provisioner()
      const [a, b] = [contractFixture({cpu_cores: 1, memory_mb: 64}), contractFixture({cpu_cores: 1, memory_mb: 64})]
      const ofA = await made.provision(a, signal())
      const ofB = await made.provision(b, signal())
      // The control: a container reaches its own service by its address, so a refusal below is the isolation's.
      expect(reach(ofA.externalId, addressOf(ofA.externalId))).toContain(`outpost-${a.contract_id} ready`)
      expect(reach(ofA.externalId, addressOf(ofB.externalId))).not.toContain('ready')
      expect(reach(ofB.externalId, addressOf(ofA.externalId))).not.toContain('ready')
      await made.terminate(ofA)
      await made.terminate(ofB)
      expect(await networksOf(a.contract_id)).toEqual([])
      expect(await networksOf(b.contract_id)).toEqual([])
    })

    it('finds the container again by its label after a restart, with its credentials', async () => {
      const contract = contractFixture({cpu_cores: 1, memory_mb: 128})
      const instance = await provisioner().provision(contract, signal())
      const found = await provisioner().find(contract.contract_id)
      expect(found).toMatchObject({externalId: instance.externalId, sshPort: instance.sshPort, credentials: instance.credentials})
      await provisioner().terminate(instance)
    })

    it('reports a workload that exits with its log, and removes the container', async () => {
      const before = (await managed()).length
      const contract = contractFixture({cpu_cores: 1, memory_mb: 64})
      const error = await failure(provisioner({command: ['/bin/sh', '-c', 'echo "config missing: /etc/service.conf" >&2; exit 3']}).provision(contract, signal()))
      expect(error.message).toMatch(/exited with code 3 before its service answered/)
      expect(error.message).toContain('config missing: /etc/service.conf')
      expect(error.retryPossible).toBe(true)
      expect((await managed()).length).toBe(before)
      expect(await networksOf(contract.contract_id)).toEqual([])
    })

    it('says how to fix a missing image, and leaves nothing', async () => {
      const before = (await managed()).length
      const error = await failure(provisioner({image: 'outpost-test/absent:none'}).provision(contractFixture({cpu_cores: 1}), signal()))
      expect(error.message).toContain('outpost never pulls')
      expect(error.retryPossible).toBe(false)
      expect((await managed()).length).toBe(before)
      const checks = await provisioner({image: 'outpost-test/absent:none'}).verifySetup()
      expect(checks.map((check) => [check.name, check.ok])).toEqual([
        ['docker engine', true],
        ['docker image', false],
      ])
    })

    it('reports health from the container state and its published port', async () => {
      const made = provisioner()
      const instance = await made.provision(contractFixture({cpu_cores: 1, memory_mb: 128}), signal())
      expect(await made.health(instance)).toMatchObject({status: 'healthy', details: {state: 'running'}})
      await engine.call('stop', {method: 'POST', path: `/containers/${instance.externalId}/stop`, query: {t: 0}})
      expect(await made.health(instance)).toMatchObject({status: 'unhealthy', details: {state: 'exited'}})
      await made.terminate(instance)
      expect(await made.health(instance)).toMatchObject({status: 'unhealthy', details: {reason: 'container not found'}})
    })

    it('never removes a container that outpost did not make, even one with the contract name named as its instance', async () => {
      const contract = contractFixture()
      const created = await engine.json('create', ContainerCreated, {method: 'POST', path: '/containers/create', query: {name: `outpost-${contract.contract_id}`}, body: {Image: image, Labels: {owner: 'someone'}}})
      const id = created?.Id ?? ''
      await provisioner().terminate({contractId: contract.contract_id, externalId: id})
      expect(await inspect(id)).toBeDefined()
      await engine.call('cleanup', {method: 'DELETE', path: `/containers/${id}`, query: {force: true}})
    })

    it('reads capacity and checks the setup', async () => {
      const capacity = await provisioner().capacity()
      expect(capacity.cpuCores).toBeGreaterThan(0)
      expect(capacity.memoryMb).toBeGreaterThan(0)
      expect((await provisioner().verifySetup()).every((check) => check.ok)).toBe(true)
    })

    describe('through a proxy that fails requests', () => {
      const dir = mkdtempSync(join(tmpdir(), 'outpost-docker-proxy-'))
      const proxySocket = join(dir, 'docker.sock')
      let failDeletes = 0
      /** Forwards to the real engine, except the next `failDeletes` DELETEs, answered 500 as the engine words them. */
      const proxy: Server = createServer((incoming: IncomingMessage, outgoing: ServerResponse) => {
        if (incoming.method === 'DELETE' && failDeletes > 0) {
          failDeletes--
          outgoing.writeHead(500, {'Content-Type': 'application/json'})
          outgoing.end(JSON.stringify({message: 'driver "overlay2" failed to remove root filesystem: device or resource busy'}))
          return
        }
        const forwarded = request({socketPath: socket, method: incoming.method, path: incoming.url, headers: incoming.headers}, (answer) => {
          outgoing.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(outgoing)
        })
        incoming.pipe(forwarded)
      })
      const listening = new Promise<void>((resolve) => proxy.listen(proxySocket, resolve))
      afterAll(async () => {
        await new Promise((resolve) => proxy.close(resolve))
        rmSync(dir, {recursive: true, force: true})
      })

      it('treats a 5xx on remove as an error to retry, never as "already gone"', async () => {
        await listening
        const made = provisioner({socket: proxySocket})
        const instance = await made.provision(contractFixture({cpu_cores: 1, memory_mb: 128}), signal())
        failDeletes = 1
        const error = await failure(made.terminate(instance))
        expect(error.retryPossible).toBe(true)
        expect(error.message).toContain('device or resource busy')
        expect(await inspect(instance.externalId)).toBeDefined()
        await made.terminate(instance)
        expect(await inspect(instance.externalId)).toBeUndefined()
      })
    })
  })
}
