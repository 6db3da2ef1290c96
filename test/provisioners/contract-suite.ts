import {randomBytes} from 'node:crypto'
import {afterAll, afterEach, describe, expect, it} from 'vitest'

import type {Contract} from '../../src/core/api/schemas.js'
import {instanceName, InstanceMismatchError, ProvisionError, type ProvisionedInstance, type Provisioner} from '../../src/provisioners/provisioner.js'

/** A contract as the marketplace sends it to an agent (PROTOCOL §6), with a fresh id. */
export function contractFixture(overrides: Partial<Contract> = {}): Contract {
  return {
    contract_id: randomBytes(16).toString('hex'),
    offering_id: 'offering-small',
    product_type: 'compute',
    cpu_cores: 2,
    memory_mb: 2048,
    storage_gb: 20,
    gpu_count: 0,
    requester_pubkey: randomBytes(32).toString('hex'),
    ssh_pubkey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEg2Yb0Z8Yh8sQ1GQf3m7m0rQG1lF4pV0Qm2mXW0mYzV renter@example',
    instance_config: null,
    created_at: Date.now(),
    status: 'accepted',
    ...overrides,
  }
}

/** A signal that never fires. */
const quiet = (): AbortSignal => new AbortController().signal

export interface ContractSuiteSubject {
  /** A provisioner on the backend under test; called once per test. */
  create(): Promise<Provisioner> | Provisioner
  makeContract?: (overrides?: Partial<Contract>) => Contract
  /** For backends that wait on a person (manual): answers the request of this contract while provision() waits. */
  operator?: (contract: Contract) => Promise<void>
  /** Arranges that provisioning this contract fails; returns the retryPossible the backend must report. */
  failProvision: (contract: Contract) => Promise<{retryPossible: boolean}> | {retryPossible: boolean}
  /** How many instances the backend itself holds (VMs, processes), so nothing made twice or left behind can hide. */
  countInstances: () => Promise<number> | number
  /** Longest a provision may take in these tests. */
  provisionTimeoutMs?: number
  teardown?: () => Promise<void>
}

/**
 * The behaviour every Provisioner promises (see src/provisioners/provisioner.ts), as vitest tests: the same suite runs
 * against each backend, so the agent can treat them all alike.
 */
export function provisionerContractSuite(name: string, subject: ContractSuiteSubject): void {
  const makeContract = subject.makeContract ?? contractFixture
  const open: Provisioner[] = []
  const timeout = subject.provisionTimeoutMs ?? 20_000

  async function fresh(): Promise<Provisioner> {
    const provisioner = await subject.create()
    open.push(provisioner)
    return provisioner
  }

  async function provision(provisioner: Provisioner, contract: Contract, signal = quiet()): Promise<ProvisionedInstance> {
    const answering = subject.operator?.(contract)
    const [instance] = await Promise.all([provisioner.provision(contract, signal), answering])
    return instance
  }

  async function rejection(work: Promise<unknown>): Promise<unknown> {
    try {
      await work
    } catch (error) {
      return error
    }
    return undefined
  }

  describe(`Provisioner contract: ${name}`, () => {
    afterEach(async () => {
      for (const provisioner of open.splice(0)) await provisioner.close?.()
    })
    afterAll(async () => {
      await subject.teardown?.()
    })

    it('provisions an instance that find, list and health all see', {timeout}, async () => {
      const provisioner = await fresh()
      const contract = makeContract()
      const instance = await provision(provisioner, contract, AbortSignal.timeout(timeout))
      expect(instance.contractId).toBe(contract.contract_id)
      expect(instance.externalId).not.toBe('')
      expect(instance.ipAddress).toMatch(/^[0-9a-f.:]+$/i)
      expect(instance.sshPort).toBeGreaterThan(0)

      const found = await provisioner.find(contract.contract_id)
      expect(found?.externalId).toBe(instance.externalId)
      expect(found?.ipAddress).toBe(instance.ipAddress)
      const listed = await provisioner.list()
      expect(listed).toContainEqual(expect.objectContaining({externalId: instance.externalId, name: instanceName(contract.contract_id), contractId: contract.contract_id}))
      expect((await provisioner.health(instance)).status).toBe('healthy')
      await provisioner.terminate(instance)
    })

    it('is idempotent: provisioning a contract again, in turn or at once, returns the one instance', {timeout: timeout * 2}, async () => {
      const provisioner = await fresh()
      const contract = makeContract()
      const before = await subject.countInstances()
      const first = await provision(provisioner, contract)
      const again = await provisioner.provision(contract, quiet())
      expect(again.externalId).toBe(first.externalId)
      // A second provisioner on the same backend is a restarted agent: it must find the instance, not make one.
      const restarted = await fresh()
      const afterRestart = await restarted.provision(contract, quiet())
      expect(afterRestart.externalId).toBe(first.externalId)
      expect(await subject.countInstances()).toBe(before + 1)

      const other = makeContract()
      const [one, two] = await Promise.all([provision(provisioner, other), provisioner.provision(other, quiet())])
      expect(two.externalId).toBe(one.externalId)
      expect(await subject.countInstances()).toBe(before + 2)
      await provisioner.terminate(first)
      await provisioner.terminate(one)
      expect(await subject.countInstances()).toBe(before)
    })

    it('terminate cleans up and is idempotent', {timeout}, async () => {
      const provisioner = await fresh()
      const contract = makeContract()
      const before = await subject.countInstances()
      const instance = await provision(provisioner, contract)
      await provisioner.terminate(instance)
      expect(await provisioner.find(contract.contract_id)).toBeUndefined()
      expect((await provisioner.list()).map((item) => item.externalId)).not.toContain(instance.externalId)
      expect((await provisioner.health(instance)).status).not.toBe('healthy')
      expect(await subject.countInstances()).toBe(before)
      await provisioner.terminate(instance)
      expect(await subject.countInstances()).toBe(before)
    })

    it('reports an instance that is gone as unhealthy, not unknown: the backend was asked and said so', {timeout}, async () => {
      const provisioner = await fresh()
      const instance = await provision(provisioner, makeContract())
      await provisioner.terminate(instance)
      expect((await provisioner.health(instance)).status).toBe('unhealthy')
      // A restarted agent, which never saw the instance, hears the same.
      expect((await (await fresh()).health(instance)).status).toBe('unhealthy')
    })

    it('terminates a contract that has no instance at once, whatever instance it is told of', {timeout}, async () => {
      const provisioner = await fresh()
      const before = await subject.countInstances()
      const never = makeContract()
      await provisioner.terminate({contractId: never.contract_id})
      await provisioner.terminate({contractId: never.contract_id, externalId: instanceName(never.contract_id)})
      expect((await provisioner.health({contractId: never.contract_id})).status).toBe('unhealthy')
      expect(await subject.countInstances()).toBe(before)
    })

    it("terminate and health for contract C never touch contract D's instance, even when given D's external id", {timeout: timeout * 2}, async () => {
      const provisioner = await fresh()
      const before = await subject.countInstances()
      const [c, d, neverProvisioned] = [makeContract(), makeContract(), makeContract()]
      const ofC = await provision(provisioner, c)
      const ofD = await provision(provisioner, d)
      const naming = (contract: Contract) => ({contractId: contract.contract_id, externalId: ofD.externalId})

      // C has an instance of its own: a claim naming D's is refused, and nothing is done.
      const refused = await rejection(provisioner.terminate(naming(c)))
      expect(refused).toBeInstanceOf(InstanceMismatchError)
      expect((refused as InstanceMismatchError).retryPossible).toBe(false)
      expect(await rejection(provisioner.health(naming(c)))).toBeInstanceOf(InstanceMismatchError)
      // A contract without an instance has nothing to terminate or check: D's is not taken for it.
      await provisioner.terminate(naming(neverProvisioned))
      expect((await provisioner.health(naming(neverProvisioned))).status).toBe('unhealthy')

      expect(await subject.countInstances()).toBe(before + 2)
      expect((await provisioner.find(d.contract_id))?.externalId).toBe(ofD.externalId)
      expect((await provisioner.health(ofD)).status).toBe('healthy')
      expect((await provisioner.health(ofC)).status).toBe('healthy')
      await provisioner.terminate(ofC)
      await provisioner.terminate(ofD)
      expect(await subject.countInstances()).toBe(before)
    })

    it('stops at once with a typed, retryable error when its signal has already fired', async () => {
      const provisioner = await fresh()
      const contract = makeContract()
      const before = await subject.countInstances()
      const controller = new AbortController()
      controller.abort(new Error('agent shutting down'))
      const started = Date.now()
      const error = await rejection(provisioner.provision(contract, controller.signal))
      expect(error).toBeInstanceOf(ProvisionError)
      expect((error as ProvisionError).retryPossible).toBe(true)
      expect(Date.now() - started).toBeLessThan(1000)
      expect(await provisioner.find(contract.contract_id)).toBeUndefined()
      expect(await subject.countInstances()).toBe(before)
    })

    it('stops part-way when aborted, and a later provision resumes to exactly one instance', {timeout: timeout * 2}, async () => {
      const provisioner = await fresh()
      const contract = makeContract()
      const before = await subject.countInstances()
      const controller = new AbortController()
      const work = provisioner.provision(contract, controller.signal)
      setTimeout(() => controller.abort(new Error('agent shutting down')), 20)
      const started = Date.now()
      const error = await rejection(work)
      if (error !== undefined) {
        expect(error).toBeInstanceOf(ProvisionError)
        expect((error as ProvisionError).retryPossible).toBe(true)
      }
      expect(Date.now() - started).toBeLessThan(5000)
      const instance = await provision(provisioner, contract)
      expect(await subject.countInstances()).toBe(before + 1)
      await provisioner.terminate(instance)
      expect(await subject.countInstances()).toBe(before)
    })

    it('reports a failure as a ProvisionError with retryPossible, and leaves nothing behind', {timeout}, async () => {
      const provisioner = await fresh()
      const contract = makeContract()
      const before = await subject.countInstances()
      const expected = await subject.failProvision(contract)
      const error = await rejection(provision(provisioner, contract))
      expect(error).toBeInstanceOf(ProvisionError)
      expect((error as ProvisionError).retryPossible).toBe(expected.retryPossible)
      expect((error as ProvisionError).message).not.toBe('')
      expect(await provisioner.find(contract.contract_id)).toBeUndefined()
      expect(await subject.countInstances()).toBe(before)
    })
  })
}
