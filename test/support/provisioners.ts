import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {expect} from 'vitest'

import {GpuSection} from '../../src/core/config/schema.js'
import {backends, type BackendContext, type BackendType} from '../../src/provisioners/index.js'
import {ProvisionError} from '../../src/provisioners/provisioner.js'

/** The ProvisionError that `work` rejects with; the test fails when it resolves, or rejects with anything else. */
export async function failure(work: Promise<unknown>): Promise<ProvisionError> {
  const error = await work.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error).toBeInstanceOf(ProvisionError)
  return error as ProvisionError
}

/**
 * A backend's settings from its `[provisioner.<type>]` section as a config file holds it (snake_case, seconds), read
 * the way the agent reads it: through the section's schema and the registry's fromConfig.
 */
export function settingsFrom<T extends BackendType>(type: T, section: Record<string, unknown>, context: Partial<BackendContext> = {}) {
  const backend = backends[type]
  return backend.fromConfig(backend.section.parse(section), {
    configPath: join(tmpdir(), 'outpost.toml'),
    stateDir: join(tmpdir(), 'outpost-state'),
    largestOfferingDiskGb: 0,
    gpu: GpuSection.parse({}),
    ...context,
  })
}
