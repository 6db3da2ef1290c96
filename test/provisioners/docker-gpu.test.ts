import {mkdtempSync, rmSync} from 'node:fs'
import {createServer, request, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {GpuSection} from '../../src/core/config/schema.js'
import type {GpuUnit} from '../../src/gpu/allocator.js'
import {findNvidiaHook} from '../../src/gpu/container-runtime.js'
import {DockerProvisioner} from '../../src/provisioners/docker/docker-provisioner.js'
import {DockerEngine} from '../../src/provisioners/docker/engine.js'
import {ContainerList} from '../../src/provisioners/docker/schemas.js'
import {MANAGED_LABEL} from '../../src/provisioners/provisioner.js'
import {asMachine, FAKE_NVIDIA_SMI} from '../gpu/fake-nvidia-smi.js'
import {testDocker} from '../support/dockerd.js'
import {failure, settingsFrom} from '../support/provisioners.js'
import {contractFixture} from './contract-suite.js'

/**
 * GPUs on the Docker backend, against a real engine that has no NVIDIA runtime (none can run here) and the fake
 * nvidia-smi: the devices come from the inventory, a container gets exactly its allocated devices by UUID, and the
 * engine's own refusal of a GPU container is said with its fix.
 */

const docker = await testDocker()

if (!docker.available) {
  describe('docker provisioner GPUs', () => {
    it.skip(`skipped: no Docker engine can run here: ${docker.reason}`, () => {})
  })
} else {
  const {socket, image} = docker
  const dir = mkdtempSync(join(tmpdir(), 'outpost-docker-gpu-'))
  const proxySocket = join(dir, 'docker.sock')
  const creates: Record<string, unknown>[] = []
  /** Forwards every request to the real engine and keeps the bodies of container creates. */
  const proxy: Server = createServer((incoming: IncomingMessage, outgoing: ServerResponse) => {
    const chunks: Buffer[] = []
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk))
    incoming.on('end', () => {
      const body = Buffer.concat(chunks)
      if (incoming.method === 'POST' && /\/containers\/create\b/.test(incoming.url ?? '')) creates.push(JSON.parse(body.toString('utf8')) as Record<string, unknown>)
      const forwarded = request({socketPath: socket, method: incoming.method, path: incoming.url, headers: incoming.headers}, (answer) => {
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(outgoing)
      })
      forwarded.end(body)
    })
  })
  beforeAll(() => new Promise<void>((resolve) => proxy.listen(proxySocket, resolve)))
  afterAll(async () => {
    await new Promise((resolve) => proxy.close(resolve))
    rmSync(dir, {recursive: true, force: true})
  })

  const provisioner = (gpu: Record<string, unknown> = {}) =>
    new DockerProvisioner(
      settingsFrom('docker', {socket: proxySocket, image, bind_address: '127.0.0.1', startup_timeout_seconds: 15, stop_timeout_seconds: 1}, {gpu: GpuSection.parse({nvidia_smi: FAKE_NVIDIA_SMI, ...gpu})}),
    )
  const engine = new DockerEngine(socket, 10_000)
  const managed = async () => (await engine.json('listing', ContainerList, {method: 'GET', path: '/containers/json', query: {all: true, filters: JSON.stringify({label: [`${MANAGED_LABEL}=true`]})}})) ?? []

  describe('Docker provisioner GPUs (a real engine, the fake nvidia-smi)', () => {
    it('capacity and the devices handed out come from the inventory and [gpu]', async () => {
      const eight = await asMachine('eight', () => provisioner().capacity())
      expect(eight).toMatchObject({gpuCount: 8, gpuModels: ['NVIDIA A100-SXM4-80GB']})
      const two = await asMachine('eight', () => provisioner({devices: ['0', '1'], models: {'NVIDIA A100-SXM4-80GB': 'a100-80gb'}}).capacity())
      expect(two).toMatchObject({gpuCount: 2, gpuModels: ['a100-80gb']})
      const mig = await asMachine('mig', () => provisioner({mig: true}).gpuUnits())
      expect(mig.map((unit) => unit.id)).toEqual([expect.stringMatching(/^MIG-/), expect.stringMatching(/^MIG-/), expect.stringMatching(/^MIG-/), expect.stringMatching(/^GPU-/)])
      expect(await asMachine('unloaded', () => provisioner().capacity())).toMatchObject({gpuCount: 0, gpuModels: []})
      expect(await provisioner({nvidia_smi: '/nonexistent/nvidia-smi'}).gpuUnits()).toEqual([])
    })

    it('asks the engine for exactly the allocated devices by UUID; the engine without the NVIDIA runtime refuses, and the error says how to fix it', async () => {
      const units: GpuUnit[] = await asMachine('eight', () => provisioner().gpuUnits())
      const given = [units[3]!, units[5]!]
      const contract = contractFixture({cpu_cores: 1, memory_mb: 128, gpu_count: 2, product_type: 'gpu'})
      creates.length = 0
      const error = await failure(provisioner().provision(contract, new AbortController().signal, given))
      expect(creates[0]?.HostConfig).toMatchObject({DeviceRequests: [{Driver: '', DeviceIDs: [given[0]!.id, given[1]!.id], Capabilities: [['gpu']]}]})
      expect(JSON.stringify(creates[0])).not.toContain('"Count"')
      expect(error.message).toContain('could not select device driver "" with capabilities: [[gpu]]')
      expect(error.message).toContain('nvidia-ctk runtime configure --runtime=docker')
      expect(error.retryPossible).toBe(false)
      // The refused container does not stay behind.
      expect((await managed()).map((container) => container.Labels['outpost.contract'])).not.toContain(contract.contract_id)
    })

    it('a GPU contract that comes without its allocated devices is refused before anything is made', async () => {
      creates.length = 0
      const error = await failure(provisioner().provision(contractFixture({gpu_count: 1}), new AbortController().signal))
      expect(error.message).toMatch(/asks for 1 GPUs and was allocated 0/)
      expect(creates).toEqual([])
    })

    it('doctor: the GPUs handed out, and the NVIDIA runtime the engine lacks, with the remedy', async () => {
      const checks = await asMachine('one', () => provisioner().verifySetup())
      expect(checks.find((check) => check.name === 'docker gpus')).toMatchObject({ok: true, message: '1 handed out: 0 (NVIDIA H100 80GB HBM3)'})
      // This host has no NVIDIA Container Toolkit (a GPU host that has it passes this check).
      const runtime = checks.find((check) => check.name === 'docker gpu runtime')
      if (findNvidiaHook() === undefined) {
        expect(runtime).toMatchObject({ok: false, message: expect.stringContaining('could not select device driver'), remedy: expect.stringContaining('nvidia-ctk runtime configure --runtime=docker')})
      } else {
        expect(runtime).toMatchObject({ok: true})
      }
      // No GPU on the host and none asked for: nothing to check.
      expect((await provisioner({nvidia_smi: '/nonexistent/nvidia-smi'}).verifySetup()).map((check) => check.name)).toEqual(['docker engine', 'docker image'])
    })
  })
}
