import {existsSync} from 'node:fs'
import {join} from 'node:path'

import {ApiClient} from '../core/api/client.js'
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

// A renter at a terminal wants an answer soon: fewer, shorter retries than the agent's.
const RENTER_RETRY = {retries: 2, baseDelayMs: 200, maxDelayMs: 2000}

export async function renterClient(dataDir: string, endpoint: string): Promise<ApiClient> {
  return new ApiClient({endpoint, key: await renterKey(dataDir), retry: RENTER_RETRY, userAgent: 'outpost-devnet-renter'})
}

/** A contract as its renter sees it, with the sealed credentials opened when asked. */
export async function showContract(dataDir: string, endpoint: string, contractId: string, decrypt: boolean): Promise<RenterContract & {credentials?: unknown}> {
  const key = await renterKey(dataDir)
  const client = new ApiClient({endpoint, key, retry: RENTER_RETRY, userAgent: 'outpost-devnet-renter'})
  const contract = await getContract(client, contractId)
  const sealed = contract.instance?.sealed_credentials
  if (!decrypt || !sealed) return contract
  return {...contract, credentials: openSealedCredentials(sealed, key.seed)}
}
