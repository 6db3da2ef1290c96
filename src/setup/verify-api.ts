import {ApiClient, marketplaceClientOptions} from '../core/api/client.js'
import {DelegationList} from '../core/api/main-key.js'
import type {LoadedConfig} from '../core/config/load.js'
import {describeError, UserError} from '../core/errors.js'
import {toHex} from '../core/hex.js'
import type {KeyPair} from '../core/signing.js'
import type {CheckResult} from './doctor.js'
import {DELEGATION_RENEW_WITHIN_MS} from './register.js'

/** What `outpost run` needs its agent key to be allowed to do. */
export const RUN_PERMISSIONS = ['fetch_contracts', 'health_check', 'heartbeat', 'provision', 'usage_report'] as const
const SKEW_WARN_MS = 30_000
const SKEW_FAIL_MS = 240_000

/**
 * `doctor --verify-api`: one signed request with no side effect (the provider's delegation list, which an agent key
 * may read), checked for reachability, clock skew against the server's Date header, and the delegation itself.
 */
export async function verifyApi(loaded: LoadedConfig, agentKey: KeyPair, now: () => number = Date.now): Promise<CheckResult[]> {
  const {marketplace} = loaded.config
  const providerPubkey = marketplace.provider_pubkey
  if (!providerPubkey) {
    return [{name: 'api', status: 'fail', message: '[marketplace] provider_pubkey is not set', remedy: 'run `outpost register` first'}]
  }
  const checks: CheckResult[] = []

  const sentAt = now()
  let answer: Awaited<ReturnType<ApiClient['raw']>>
  try {
    const client = new ApiClient({...marketplaceClientOptions(marketplace), key: agentKey, retry: {retries: 0, baseDelayMs: 0, maxDelayMs: 0}})
    answer = await client.raw('GET', `/providers/${providerPubkey}/agent-delegations`, {})
  } catch (error) {
    return [{name: 'api reachable', status: 'fail', message: describeError(error), remedy: error instanceof UserError ? error.suggestion : undefined}]
  }
  const roundTrip = now() - sentAt
  checks.push({name: 'api reachable', status: 'pass', message: `${marketplace.endpoint} answered in ${roundTrip} ms`})

  const serverDate = Date.parse(answer.headers.get('date') ?? '')
  if (Number.isNaN(serverDate)) {
    checks.push({name: 'clock', status: 'warn', message: 'the server sent no Date header; clock skew unknown'})
  } else {
    // The Date header has one-second resolution and was stamped somewhere within the round trip.
    const skew = sentAt + roundTrip / 2 - (serverDate + 500)
    const seconds = (skew / 1000).toFixed(1)
    const remedy = 'synchronise this host\'s clock (timedatectl set-ntp true); requests more than 300 s off are refused'
    if (Math.abs(skew) > SKEW_FAIL_MS) checks.push({name: 'clock', status: 'fail', message: `this host's clock is ${seconds} s off the server's`, remedy})
    else if (Math.abs(skew) > SKEW_WARN_MS) checks.push({name: 'clock', status: 'warn', message: `this host's clock is ${seconds} s off the server's`, remedy})
    else checks.push({name: 'clock', status: 'pass', message: `within ${Math.max(1, Math.ceil(Math.abs(skew) / 1000))} s of the server's`})
  }

  if (answer.status !== 200) {
    const code = typeof answer.json === 'object' && answer.json !== null && 'error' in answer.json ? JSON.stringify((answer.json as {error: unknown}).error) : `HTTP ${answer.status}`
    checks.push({
      name: 'delegation',
      status: 'fail',
      message: `the marketplace refused the agent key: ${code}`,
      remedy: 'run `outpost register` (or `outpost keys rotate`) to delegate this agent key',
    })
    return checks
  }
  const agentPubkey = toHex(agentKey.publicKey)
  const list = DelegationList.safeParse(answer.json)
  if (!list.success) {
    checks.push({name: 'delegation', status: 'fail', message: 'the marketplace answered the delegation list with an unexpected body', remedy: 'check that [marketplace] endpoint points at an Outpost protocol v1 API'})
    return checks
  }
  const own = list.data.delegations.find((delegation) => delegation.agent_pubkey === agentPubkey)
  if (!own || own.revoked_at !== null) {
    checks.push({name: 'delegation', status: 'fail', message: `no active delegation for agent key ${agentPubkey}`, remedy: 'run `outpost register`'})
    return checks
  }
  const left = own.expires_at === null ? Infinity : own.expires_at - now()
  if (left <= DELEGATION_RENEW_WITHIN_MS) {
    checks.push({
      name: 'delegation',
      status: 'warn',
      message: `valid, but expires ${new Date(own.expires_at ?? 0).toISOString()} (in ${(left / 86_400_000).toFixed(1)} days)`,
      remedy: 'renew it with `outpost register --expires-in 90d`, or rotate with `outpost keys rotate`',
    })
  } else {
    checks.push({name: 'delegation', status: 'pass', message: `valid, ${own.expires_at === null ? 'never expires' : `expires ${new Date(own.expires_at).toISOString()}`}`})
  }
  const missing = RUN_PERMISSIONS.filter((permission) => !own.permissions.includes(permission))
  checks.push(
    missing.length === 0
      ? {name: 'permissions', status: 'pass', message: `sufficient for outpost run (${own.permissions.join(', ')})`}
      : {name: 'permissions', status: 'fail', message: `missing ${missing.join(', ')}`, remedy: `re-run \`outpost register --permissions ${RUN_PERMISSIONS.join(',')}\``},
  )
  return checks
}
