import type {ApiClient} from '../core/api/client.js'
import {configuredClient} from '../core/api/factory.js'
import {identifyEndpoint, notMarketplace} from '../core/api/identify.js'
import {DelegationList} from '../core/api/main-key.js'
import {ApiErrorBody} from '../core/api/schemas.js'
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
  const client = configuredClient(loaded, 'probe', {key: agentKey})
  const providerPubkey = marketplace.provider_pubkey
  if (!providerPubkey) {
    const identity = await identityCheck(client, marketplace.endpoint)
    if (identity) return [identity]
    return [{name: 'api', status: 'fail', message: '[marketplace] provider_pubkey is not set: this provider is not registered yet', remedy: registerCommand(loaded)}]
  }
  const checks: CheckResult[] = []

  const sentAt = now()
  let answer: Awaited<ReturnType<ApiClient['raw']>>
  try {
    const client = configuredClient(loaded, 'probe', {key: agentKey})
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

  const list = answer.status === 200 ? DelegationList.safeParse(answer.json) : undefined
  if (!list?.success) {
    // Whatever went wrong, first make sure this is a marketplace at all: any HTTP server answers something.
    checks.push((await identityCheck(client, marketplace.endpoint)) ?? delegationRefused(answer, loaded, toHex(agentKey.publicKey)))
    return checks
  }
  const agentPubkey = toHex(agentKey.publicKey)
  const own = list.data.delegations.find((delegation) => delegation.agent_pubkey === agentPubkey)
  if (!own || own.revoked_at !== null) {
    checks.push({name: 'delegation', status: 'fail', message: `no active delegation for agent key ${agentPubkey}`, remedy: registerCommand(loaded)})
    return checks
  }
  const left = own.expires_at === null ? Infinity : own.expires_at - now()
  if (left <= DELEGATION_RENEW_WITHIN_MS) {
    checks.push({
      name: 'delegation',
      status: 'warn',
      message: `valid, but expires ${new Date(own.expires_at ?? 0).toISOString()} (in ${(left / 86_400_000).toFixed(1)} days)`,
      remedy: `renew it: ${registerCommand(loaded, ' --expires-in 90d')}, or rotate with \`outpost keys rotate\``,
    })
  } else {
    checks.push({name: 'delegation', status: 'pass', message: `valid, ${own.expires_at === null ? 'never expires' : `expires ${new Date(own.expires_at).toISOString()}`}`})
  }
  const missing = RUN_PERMISSIONS.filter((permission) => !own.permissions.includes(permission))
  checks.push(
    missing.length === 0
      ? {name: 'permissions', status: 'pass', message: `sufficient for outpost run (${own.permissions.join(', ')})`}
      : {name: 'permissions', status: 'fail', message: `missing ${missing.join(', ')}`, remedy: registerCommand(loaded, ` --permissions ${RUN_PERMISSIONS.join(',')}`)},
  )
  return checks
}

/** A failed check when the endpoint is no marketplace (or can't be reached); undefined when it is one. */
async function identityCheck(client: ApiClient, endpoint: string): Promise<CheckResult | undefined> {
  const identity = await identifyEndpoint(client)
  if (identity.kind === 'marketplace') return undefined
  const {message, remedy} = identity.kind === 'other' ? notMarketplace(endpoint, identity.detail) : {message: identity.detail, remedy: "check [marketplace] endpoint and this host's network"}
  return {name: 'marketplace', status: 'fail', message, remedy}
}

function registerCommand(loaded: LoadedConfig, extra = ''): string {
  return `run \`outpost register --config ${loaded.path} --main-key-file <main key>${extra}\``
}

/** Why a marketplace refused the agent key's read of its delegations, said in words, with the command that fixes it. */
function delegationRefused(answer: {status: number; json: unknown}, loaded: LoadedConfig, agentPubkey: string): CheckResult {
  const body = ApiErrorBody.safeParse(answer.json)
  const code = body.success ? body.data.error.code : `http_${answer.status}`
  const provider = loaded.config.marketplace.provider_pubkey ?? ''
  const reasons: Record<string, [string, string]> = {
    unknown_key: [`the marketplace does not know agent key ${agentPubkey}: it was never delegated`, `${registerCommand(loaded)} to delegate it`],
    delegation_expired: [`the delegation of agent key ${agentPubkey} has expired`, `${registerCommand(loaded, ' --expires-in 90d')} to renew it`],
    delegation_revoked: [`the delegation of agent key ${agentPubkey} was revoked`, `${registerCommand(loaded)} to delegate it again`],
    wrong_provider: [`agent key ${agentPubkey} is delegated by another provider than ${provider}`, `check [marketplace] provider_pubkey, or ${registerCommand(loaded)}`],
    not_found: [`provider ${provider} is not registered on this marketplace`, `${registerCommand(loaded)} to register it`],
    permission_denied: [`the delegation of agent key ${agentPubkey} does not allow reading delegations`, `${registerCommand(loaded)} to grant the agent permissions`],
    stale_timestamp: ["the marketplace refused the request's time: this host's clock is off", 'synchronise the clock (timedatectl set-ntp true)'],
  }
  const [message, remedy] = reasons[code] ?? [
    `the marketplace refused the agent key (${answer.status} ${code}${body.success ? `: ${body.data.error.message}` : ''})`,
    `${registerCommand(loaded)} to delegate this agent key`,
  ]
  return {name: 'delegation', status: 'fail', message, remedy}
}
