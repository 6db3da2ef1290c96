/**
 * `outpost run` with a backend whose own cost is nothing: the bench's way to measure the agent itself. It is the
 * agent service the CLI runs (config, key, journal, outbox, archives, reports, health checks, usage), with the
 * provisioner swapped for one that keeps its instances in a map and counts the calls it gets. Run as its own process
 * (`tsx scripts/bench/recording-agent.ts`, with OUTPOST_CONFIG_DIR) so its CPU can be read from /proc.
 */
import {runAgentService} from '../../src/agent/service.js'
import {configDir, configFilePath} from '../../src/core/config/paths.js'
import {loadConfig} from '../../src/core/config/load.js'
import {readKeyFile} from '../../src/core/keys.js'
import type {Contract} from '../../src/core/api/schemas.js'
import {checkClaim, healthOfClaim, instanceName, type InstanceClaim, type ProvisionedInstance, type Provisioner} from '../../src/provisioners/provisioner.js'

class RecordingProvisioner implements Provisioner {
  readonly type = 'recording'
  readonly calls = new Map<string, number>()
  private readonly instances = new Map<string, ProvisionedInstance>()

  private count(call: string): void {
    this.calls.set(call, (this.calls.get(call) ?? 0) + 1)
  }

  async provision(contract: Contract): Promise<ProvisionedInstance> {
    this.count('provision')
    const instance = this.instances.get(contract.contract_id) ?? {
      externalId: instanceName(contract.contract_id),
      contractId: contract.contract_id,
      ipAddress: '127.0.0.1',
      sshPort: 22,
      credentials: {username: 'outpost', password: `pw-${contract.contract_id}`},
    }
    this.instances.set(contract.contract_id, instance)
    return instance
  }

  async terminate(claim: InstanceClaim): Promise<void> {
    this.count('terminate')
    const instance = this.instances.get(claim.contractId)
    checkClaim(claim, instance ? [instance] : [])
    this.instances.delete(claim.contractId)
  }

  async health(claim: InstanceClaim) {
    this.count('health')
    const instance = this.instances.get(claim.contractId)
    return healthOfClaim('instance', claim, async () => (instance ? [instance] : []), () => ({status: 'healthy' as const, uptimeSeconds: 1}))
  }

  async find(contractId: string): Promise<ProvisionedInstance | undefined> {
    this.count('find')
    return this.instances.get(contractId)
  }

  async list() {
    this.count('list')
    return [...this.instances.values()].map((instance) => ({externalId: instance.externalId, contractId: instance.contractId, name: instance.externalId}))
  }

  async verifySetup() {
    return []
  }

  async capacity() {
    return {cpuCores: 4096, memoryMb: 4096 * 1024, storageGb: 1_000_000, gpuCount: 0}
  }
}

const loaded = loadConfig(configFilePath(undefined, configDir(undefined)))
const key = await readKeyFile(loaded.paths.keyFile)
const provisioner = new RecordingProvisioner()
await runAgentService({
  loaded,
  key,
  createProvisioner: () => provisioner,
  version: 'bench',
  once: false,
  pruneOrphans: false,
  shutdownTimeoutMs: 10_000,
})
process.stderr.write(`backend calls: ${JSON.stringify(Object.fromEntries(provisioner.calls))}\n`)
