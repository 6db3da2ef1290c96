import {Flags, type Interfaces} from '@oclif/core'

import {parseDuration} from '../core/duration.js'
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
