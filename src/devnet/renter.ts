import {existsSync} from 'node:fs'
import {join} from 'node:path'

import type {ApiClient} from '../core/api/client.js'
import {createApiClient} from '../core/api/factory.js'
import {getContract, type RenterContract} from '../core/api/renter.js'
import {createKeyFile, readKeyFile, type StoredKey} from '../core/keys.js'
import {openSealedCredentials} from '../core/sealing.js'

/** The devnet renter's key, kept beside the devnet database. */
export const RENTER_KEY_FILE_NAME = 'renter.key'

export function renterKeyPath(dataDir: string): string {
  return join(dataDir, RENTER_KEY_FILE_NAME)
}

/** Reads the renter key, creating it (mode 0600) on first use. */
export async function renterKey(dataDir: string): Promise<StoredKey> {
  const path = renterKeyPath(dataDir)
  if (!existsSync(path)) return createKeyFile(path, 'renter').key
  return readKeyFile(path)
}

const RENTER_AGENT = 'outpost-devnet-renter'

/** A client of the devnet for its public reads. */
export function devnetReader(endpoint: string): ApiClient {
  return createApiClient('interactive', {endpoint})
}

/** A client that signs as the devnet renter. */
export async function renterClient(dataDir: string, endpoint: string): Promise<ApiClient> {
  return createApiClient('interactive', {endpoint, key: await renterKey(dataDir), userAgent: RENTER_AGENT})
}

/** A contract as its renter sees it, with the sealed credentials opened when asked. */
export async function showContract(dataDir: string, endpoint: string, contractId: string, decrypt: boolean): Promise<RenterContract & {credentials?: unknown}> {
  const key = await renterKey(dataDir)
  const contract = await getContract(createApiClient('interactive', {endpoint, key, userAgent: RENTER_AGENT}), contractId)
  const sealed = contract.instance?.sealed_credentials
  if (!decrypt || !sealed) return contract
  return {...contract, credentials: openSealedCredentials(sealed, key.seed)}
}
