import {existsSync} from 'node:fs'
import {join} from 'node:path'

import type {ApiClient} from '../core/api/client.js'
import {ApiError} from '../core/api/api-error.js'
import {createApiClient} from '../core/api/factory.js'
import {identifyEndpoint, notMarketplace} from '../core/api/identify.js'
import {getContract, type RenterContract} from '../core/api/renter.js'
import type {Instance} from '../core/api/schemas.js'
import {ExitCode, UserError} from '../core/errors.js'
import {createKeyFile, readKeyFile, type StoredKey} from '../core/keys.js'
import {openSealedCredentials} from '../core/sealing.js'
import type {DevnetTarget} from './flags.js'
import {recordedProcessRuns} from './record.js'

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
export function devnetReader(target: DevnetTarget): ApiClient {
  return createApiClient('interactive', {endpoint: target.endpoint})
}

/** A client that signs as the devnet renter. */
export async function renterClient(target: DevnetTarget): Promise<ApiClient> {
  return createApiClient('interactive', {endpoint: target.endpoint, key: await renterKey(target.dataDir), userAgent: RENTER_AGENT})
}

/** Why the devnet is not there, said with the command that brings it back. */
function unreachable(target: DevnetTarget, error: ApiError): UserError {
  const {record} = target
  let suggestion: string
  if (target.flags.includes('--endpoint')) suggestion = 'check --endpoint (or OUTPOST_DEVNET_ENDPOINT): is `outpost devnet start` running there?'
  else if (record && !recordedProcessRuns(record)) suggestion = `the devnet recorded in ${record.data_dir} (pid ${record.pid}) has stopped: start it again with \`outpost devnet start --data-dir ${record.data_dir}\``
  else if (record) suggestion = `the devnet recorded in ${record.data_dir} (pid ${record.pid}) does not answer at ${record.endpoint}: restart it, or pass --endpoint`
  else suggestion = 'no devnet was started here: run `outpost devnet start` (in another terminal), or pass --endpoint'
  return new UserError(`cannot reach the devnet at ${target.endpoint}`, {code: error.apiCode, exit: ExitCode.unreachable, suggestion, cause: error})
}

/**
 * A devnet call whose failures name the devnet: one that isn't running says how to start it; a server that isn't a
 * marketplace (an endpoint ending in /api/v1, another service on the port) is named as such, not as "not found".
 */
export async function onDevnet<T>(target: DevnetTarget, call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    if (!(error instanceof ApiError)) throw error
    if (error.status === 0) throw unreachable(target, error)
    if (error.apiCode === 'unexpected_response' || /^http_\d+$/.test(error.apiCode) || error.apiCode === 'not_found') {
      const identity = await identifyEndpoint(devnetReader(target)).catch(() => undefined)
      if (identity?.kind === 'other') {
        const {message} = notMarketplace(target.endpoint, identity.detail)
        throw new UserError(message, {code: 'not_a_marketplace', exit: ExitCode.failed, suggestion: 'pass the endpoint `outpost devnet start` printed, without /api/v1', cause: error})
      }
    }
    throw error
  }
}

/** How a renter reaches the machine: SSH, or (the local backend's banner service) a plain TCP connection. */
export interface ConnectHint {
  protocol: 'ssh' | 'tcp-banner'
  command: string
  note: string
}

export function connectHint(instance: Instance, credentials?: {username?: string}): ConnectHint {
  const {ip_address: ip, ssh_port: port} = instance
  if (instance.details?.protocol === 'tcp-banner') {
    return {
      protocol: 'tcp-banner',
      command: `nc ${ip} ${port}`,
      note: "the local backend's banner service, not SSH: it greets, then takes the password as one line and answers welcome",
    }
  }
  const user = credentials?.username ?? '<user>'
  return {
    protocol: 'ssh',
    command: `ssh -p ${port} ${user}@${ip}`,
    note: credentials?.username ? 'with the SSH key you rented it with, or the password above' : 'with the SSH key you rented it with; the user and password: `outpost devnet contract show --decrypt`',
  }
}

/** A contract as its renter sees it, with the sealed credentials opened when asked, and how to connect once it runs. */
export async function showContract(target: DevnetTarget, contractId: string, decrypt: boolean): Promise<RenterContract & {credentials?: unknown; connect?: ConnectHint}> {
  const key = await renterKey(target.dataDir)
  const contract = await onDevnet(target, () => getContract(createApiClient('interactive', {endpoint: target.endpoint, key, userAgent: RENTER_AGENT}), contractId))
  const sealed = contract.instance?.sealed_credentials
  const credentials = decrypt && sealed ? openSealedCredentials(sealed, key.seed) : undefined
  const username = typeof credentials === 'object' && credentials !== null && 'username' in credentials && typeof credentials.username === 'string' ? credentials.username : undefined
  const live = contract.instance && ['provisioned', 'active'].includes(contract.status)
  return {
    ...contract,
    ...(credentials === undefined ? {} : {credentials}),
    ...(live && contract.instance ? {connect: connectHint(contract.instance, username === undefined ? undefined : {username})} : {}),
  }
}
