import {existsSync, readFileSync, statSync} from 'node:fs'
import {homedir} from 'node:os'
import {join} from 'node:path'
import * as Flags from '@oclif/core/flags'
import type * as Interfaces from '@oclif/core/interfaces'

import {parseDuration} from '../core/duration.js'
import {ExitCode, UserError} from '../core/errors.js'
import {readKeyFileContent} from '../core/keys.js'
import {passphraseFromFile, type PassphraseReader} from '../ui/passphrase.js'

// Flags every command reads the same way, each parsed into the value the command uses: a usage error names the flag
// before the command does anything.

/** The provider main key's file, as --main-key-file names it: checked to hold a provider main key, not yet opened. */
export interface MainKeyFile {
  path: string
  /** Hex, readable without the passphrase: enough for public reads. */
  publicKey: string
  encrypted: boolean
}

/** --main-key-file (or OUTPOST_MAIN_KEY_FILE): refused at once when the file holds another kind of key. */
export const mainKeyFile = Flags.custom<MainKeyFile>({
  description: 'provider main key file',
  env: 'OUTPOST_MAIN_KEY_FILE',
  parse: async (path) => {
    const content = readKeyFileContent(path, {mainKey: true})
    return {path, publicKey: content.public_key, encrypted: 'encrypted' in content}
  },
})

/** --passphrase-file: read when an encrypted key is opened, not before. */
export const passphraseFile = Flags.custom<PassphraseReader>({
  description: 'file holding the passphrase of encrypted keys (else OUTPOST_KEY_PASSPHRASE, else asked in a terminal)',
  parse: async (path) => passphraseFromFile(path),
})()

/** The flags of every command signed with the provider main key. */
export const mainKeyFlags = {
  'main-key-file': mainKeyFile(),
  'passphrase-file': passphraseFile,
}

/**
 * The flags of every command that talks to a marketplace. `--allow-insecure-http` is [marketplace]
 * allow_insecure_http for one run: without it an http:// endpoint that is not loopback is refused, since signed
 * requests and their answers would cross the network in clear.
 */
export const marketplaceFlags = {
  'allow-insecure-http': Flags.boolean({
    description: 'allow an http:// marketplace endpoint that is not loopback (signed requests and answers cross the network in clear)',
    env: 'OUTPOST_ALLOW_INSECURE_HTTP',
    helpGroup: 'MARKETPLACE',
  }),
}

export const yesFlag = {
  yes: Flags.boolean({char: 'y', description: 'confirm without asking (needed with no terminal, in CI, and with --json)'}),
}

const durationFlag = Flags.custom<number>({parse: async (text, _context, flag) => parseDuration(text, `--${flag.name}`)})

type DurationOptions = {
  description: string
  env?: string
  exclusive?: string[]
}

/**
 * A duration in milliseconds, written with its unit: one parser, so every flag accepts the same forms. A default is
 * shown in the help as written and parsed when the flag is absent (oclif would show it in milliseconds).
 */
export function duration(options: DurationOptions & {default: string}): Interfaces.OptionFlag<number>
export function duration(options: DurationOptions): Interfaces.OptionFlag<number | undefined>
export function duration(options: DurationOptions & {default?: string}): Interfaces.OptionFlag<number> | Interfaces.OptionFlag<number | undefined> {
  const {default: text, ...rest} = options
  if (text === undefined) return durationFlag(rest)
  const defaultMs = parseDuration(text, 'default')
  return durationFlag({...rest, description: `${rest.description} [default: ${text}]`, default: async () => defaultMs, noCacheDefault: true})
}

/** A lifetime: a duration in milliseconds, or `never`. */
export const lifetime = Flags.custom<number | 'never'>({parse: async (text, _context, flag) => (text.trim() === 'never' ? 'never' : parseDuration(text, `--${flag.name}`))})

const SSH_KEY_TYPES = ['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com']

/** Why a line is not an OpenSSH public key (`type base64 [comment]` whose blob names the same type), or undefined. */
export function sshPublicKeyProblem(line: string): string | undefined {
  const [type = '', blob = '', ...rest] = line.trim().split(/\s+/)
  if (/PRIVATE KEY-----/.test(line)) return 'that is a private key: give the public one (the .pub file)'
  if (!SSH_KEY_TYPES.includes(type)) return `expected an OpenSSH public key starting with one of ${SSH_KEY_TYPES.slice(0, 3).join(', ')}, ...`
  const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(blob) ? Buffer.from(blob, 'base64') : Buffer.alloc(0)
  const nameLength = bytes.length >= 4 ? bytes.readUInt32BE(0) : -1
  if (nameLength < 0 || 4 + nameLength > bytes.length || bytes.subarray(4, 4 + nameLength).toString('latin1') !== type) return `the key data is not a ${type} key`
  if (rest.some((word) => /[\p{Cc}]/u.test(word))) return 'the comment holds control characters'
  return undefined
}

/**
 * --ssh-pubkey: the key itself, or a file holding it (`~/` is expanded, as a shell would not do after `=`); anything
 * that is not one OpenSSH public key is refused before the command does anything.
 */
export const sshPublicKey = Flags.custom<string>({
  parse: async (value, _context, flag) => {
    const name = `--${flag.name}`
    let text = value
    if (!/^\s*(ssh-|ecdsa-|sk-)/.test(value)) {
      const path = value.startsWith('~/') ? join(homedir(), value.slice(2)) : value
      if (!existsSync(path) || !statSync(path).isFile()) {
        throw new UserError(`${name} ${value}: neither a public key nor a file`, {code: 'invalid_ssh_key', exit: ExitCode.usage, suggestion: `pass the key file, like ${name} ~/.ssh/id_ed25519.pub, or the key itself`})
      }
      text = readFileSync(path, 'utf8')
    }
    const lines = text.split('\n').map((line) => line.trim()).filter((line) => line.length > 0 && !line.startsWith('#'))
    const problem = lines.length === 1 ? sshPublicKeyProblem(lines[0] ?? '') : /PRIVATE KEY-----/.test(text) ? 'that is a private key: give the public one (the .pub file)' : `expected one public key, found ${lines.length} lines`
    if (problem) {
      throw new UserError(`${name}: ${problem}`, {code: 'invalid_ssh_key', exit: ExitCode.usage, suggestion: `pass an OpenSSH public key, like ${name} ~/.ssh/id_ed25519.pub (make one with ssh-keygen -t ed25519)`})
    }
    return lines[0] ?? ''
  },
})
