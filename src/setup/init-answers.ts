import {z} from 'zod'

import {isAmount} from '../core/decimal.js'
import {ExitCode, UserError} from '../core/errors.js'
import type {AnswersOf, AnswerTable} from './answers.js'
import {OFFERING_SIZE_NAMES} from './offerings.js'

/** Every answer `outpost init` takes, by flag name: its environment variable and description. */
export const INIT_ANSWERS = {
  endpoint: {kind: 'text', env: 'OUTPOST_MARKETPLACE_ENDPOINT', description: 'marketplace API base URL, without /api/v1 (default: http://127.0.0.1:8787, a local devnet)'},
  name: {kind: 'text', env: 'OUTPOST_PROVIDER_NAME', description: 'provider name shown to renters, written to [provider] (with --contact-email)'},
  'contact-email': {kind: 'text', env: 'OUTPOST_PROVIDER_CONTACT_EMAIL', description: 'where the marketplace and renters reach you, written to [provider] (with --name)'},
  offerings: {
    kind: 'text',
    env: 'OUTPOST_INIT_OFFERINGS',
    description: `offerings to write, sized from the detected capacity: comma-separated ${OFFERING_SIZE_NAMES.join(', ')}, or all, or none (default with no terminal: none)`,
  },
  'price-per-core': {kind: 'text', env: 'OUTPOST_INIT_PRICE_PER_CORE', description: 'price per vCPU per hour of those offerings, in tokens, like 0.02'},
} as const satisfies AnswerTable

export type InitAnswers = AnswersOf<typeof INIT_ANSWERS>

function usage(message: string, suggestion: string): UserError {
  return new UserError(message, {code: 'invalid_flag', exit: ExitCode.usage, suggestion})
}

const ENDPOINT_SUFFIX = /\/api\/v1\/?$/

/**
 * Why a marketplace endpoint can't be used, or undefined: it must be an http(s) URL, and the base one (the client
 * adds /api/v1 to every path, so a URL that ends in it reaches nothing).
 */
export function endpointProblem(value: string): string | undefined {
  if (!/^https?:\/\//i.test(value)) return 'expected an http:// or https:// URL'
  if (!URL.canParse(value)) return 'not a URL'
  if (ENDPOINT_SUFFIX.test(new URL(value).pathname)) return 'ends in /api/v1: the endpoint is the base URL, without it'
  return undefined
}

/** The endpoint as given, checked; a bare host name gets the remedy of its https:// form. */
export function checkEndpoint(value: string, flag = '--endpoint'): string {
  const problem = endpointProblem(value)
  if (!problem) return value.replace(/\/+$/, '')
  const fixed = ENDPOINT_SUFFIX.test(value) ? value.replace(ENDPOINT_SUFFIX, '') : /^[\w.-]+(:\d+)?(\/.*)?$/.test(value) ? `https://${value}` : undefined
  return invalidAnswer(`${flag} ${value}: ${problem}`, fixed ? `pass ${flag} ${fixed}` : `pass ${flag} https://marketplace.example.net`)
}

function invalidAnswer(message: string, suggestion: string): never {
  throw usage(message, suggestion)
}

const Email = z.email()

export function emailProblem(value: string): string | undefined {
  return Email.safeParse(value).success ? undefined : 'expected an email address, like ops@example.net'
}

export function nameProblem(value: string): string | undefined {
  if (value.trim().length === 0) return 'expected a name'
  if (value.length > 128) return 'at most 128 characters'
  // The config refuses control characters and direction overrides in names: refuse them here, before anything is written.
  return /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]/u.test(value) ? 'expected one line of printable text' : undefined
}

export function priceProblem(value: string): string | undefined {
  return isAmount(value) && /[1-9]/.test(value) ? undefined : 'expected a decimal above zero with at most 6 digits after the point, like 0.02'
}

/** The sizes named by --offerings: `all`, `none`, or a list of sizes. */
export function parseOfferingSizes(value: string): readonly string[] {
  const names = value.split(',').map((name) => name.trim()).filter(Boolean)
  if (names.length === 1 && names[0] === 'all') return OFFERING_SIZE_NAMES
  if (names.length === 1 && names[0] === 'none') return []
  const unknown = names.filter((name) => !OFFERING_SIZE_NAMES.includes(name))
  if (unknown.length > 0 || names.length === 0) {
    return invalidAnswer(`--offerings ${value}: unknown size ${unknown.join(', ') || '(none given)'}`, `pass sizes from ${OFFERING_SIZE_NAMES.join(', ')}, or all, or none`)
  }
  return [...new Set(names)]
}

/** Every answer given as a flag or variable, checked before init asks or writes anything. */
export function checkInitAnswers(answers: InitAnswers): {endpoint?: string; sizes?: readonly string[]} {
  const checked: {endpoint?: string; sizes?: readonly string[]} = {}
  if (answers.endpoint !== undefined) checked.endpoint = checkEndpoint(answers.endpoint)
  checkProfileFlags(answers)
  const price = answers['price-per-core'] === undefined ? undefined : priceProblem(answers['price-per-core'])
  if (price) invalidAnswer(`--price-per-core ${answers['price-per-core']}: ${price}`, 'pass --price-per-core 0.02')
  if (answers.offerings !== undefined) checked.sizes = parseOfferingSizes(answers.offerings)
  return checked
}

/** The provider profile given as flags (register, setup proxmox), checked before anything is sent. */
export function checkProfileFlags(flags: {name?: string; 'contact-email'?: string; website?: string}): void {
  const name = flags.name === undefined ? undefined : nameProblem(flags.name)
  if (name) invalidAnswer(`--name: ${name}`, 'pass --name "Acme Compute"')
  const email = flags['contact-email'] === undefined ? undefined : emailProblem(flags['contact-email'])
  if (email) invalidAnswer(`--contact-email ${flags['contact-email']}: ${email}`, 'pass --contact-email ops@example.net')
  if (flags.website !== undefined && !/^https?:\/\/\S+$/.test(flags.website)) invalidAnswer(`--website ${flags.website}: expected an http:// or https:// URL`, 'pass --website https://example.net')
}
