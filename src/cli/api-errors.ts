import {ApiError} from '../core/api/api-error.js'
import {ExitCode, type ExitCodeValue} from '../core/errors.js'

export interface ExplainedError {
  code: string
  message: string
  suggestion?: string
  exit: ExitCodeValue
}

/** `METHOD /path: status code[: the server's message]`, as ApiError words a marketplace's answer. */
const API_ERROR_TEXT = /^(?<method>[A-Z]+) (?<path>\S+): (?<status>\d{3}) (?<code>\S+?)(?:: (?<said>[\s\S]*))?$/

const REGISTER = 'run `outpost register --main-key-file <main key>`: it registers the provider and delegates the agent key'

/** The id in a path like /disputes/{id} or /providers/{pk}/..., shortened for a message. */
function idIn(path: string, after: string): string | undefined {
  const parts = path.split('?')[0]?.split('/') ?? []
  const index = parts.indexOf(after)
  const id = index === -1 ? undefined : parts[index + 1]
  return id && id.length > 16 ? `${id.slice(0, 12)}…` : id
}

/**
 * A marketplace's refusal said in words, with what to do about it: the PROTOCOL §4 codes a person meets (a provider
 * that isn't registered, a key nobody delegated, an id that doesn't exist), never a bare "404 not_found". Answers it
 * doesn't know keep the server's message and the client's remedy.
 */
export function explainApiError(error: ApiError): ExplainedError {
  const base = {code: error.apiCode, exit: error.exit, message: error.message, suggestion: error.suggestion}
  const parts = API_ERROR_TEXT.exec(error.message)?.groups
  if (!parts || error.status === 0) return base
  const {path = '', said = ''} = parts
  const request = `${parts.method} ${path.split('?')[0]}: ${error.status} ${error.apiCode}`
  switch (error.apiCode) {
    case 'unknown_key':
      return {...base, message: `the marketplace does not know the key that signed this: the provider is not registered there, or this agent key is not delegated (${request})`, suggestion: REGISTER}
    case 'delegation_expired':
      return {...base, message: `the agent key's delegation has expired (${request})`, suggestion: 'renew it: `outpost register --main-key-file <main key> --expires-in 90d`'}
    case 'delegation_revoked':
      return {...base, message: `the agent key's delegation was revoked (${request})`, suggestion: 'delegate it again with `outpost register --main-key-file <main key>`, or use the key that replaced it'}
    case 'permission_denied':
      return {...base, message: `the key that signed may not do this: ${said || 'permission denied'} (${request})`, suggestion: 'this needs the provider main key (--main-key-file), or an agent key delegated with that permission (`outpost register --permissions ...`)'}
    case 'wrong_provider':
      return {...base, message: `the agent key acts for another provider than this one (${request})`, suggestion: 'check [marketplace] provider_pubkey in the config: it must be the provider that delegated this agent key'}
    case 'not_found': {
      const what = /^(\w+) not found$/.exec(said)?.[1] ?? 'the thing asked for'
      if (what === 'provider') {
        return {...base, message: `provider ${idIn(path, 'providers') ?? ''} is not registered on this marketplace (${request})`, suggestion: REGISTER}
      }
      const id = idIn(path, `${what}s`)
      return {...base, message: `the marketplace has no ${what}${id ? ` ${id}` : ''} (${request})`, suggestion: `check the ${what} id${what === 'dispute' ? ': `outpost dispute list` shows yours' : ''}`}
    }
    case 'invalid_transition':
      return {...base, message: `${said || 'not allowed in its current state'} (${request})`, suggestion: base.suggestion ?? 'nothing was changed: the message says which state stands in the way'}
    case 'invalid_body':
    case 'invalid_query':
      return {...base, exit: ExitCode.failed, message: `the marketplace refused the request's values: ${said} (${request})`, suggestion: 'fix the value named (it comes from a flag or the config) and run the command again'}
    default:
      return base
  }
}

export function isApiError(error: unknown): error is ApiError {
  return error instanceof ApiError
}
