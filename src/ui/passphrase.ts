import {readFileSync} from 'node:fs'

import {ExitCode, UserError} from '../core/errors.js'
import {canPrompt} from './interactive.js'

/** Gives the passphrase when a key needs it. */
export type PassphraseReader = () => Promise<string>

export interface PassphraseOptions {
  /** --passphrase-file, as its flag parsed it. */
  fromFile?: PassphraseReader
  /** Ask twice (for a new passphrase). */
  confirm?: boolean
  /** Whether a person may be asked; default: when there is a terminal (see canPrompt). */
  mayPrompt?: boolean
}

/** The passphrase in a file, read only when a key asks for it: most keys aren't encrypted. */
export function passphraseFromFile(file: string): PassphraseReader {
  return async () => {
    let text: string
    try {
      text = readFileSync(file, 'utf8').replace(/\r?\n$/, '')
    } catch (error) {
      const code = typeof error === 'object' && error !== null && 'code' in error ? ` (${String(error.code)})` : ''
      throw new UserError(`cannot read the passphrase file ${file}${code}`, {code: 'passphrase_file', exit: ExitCode.usage, suggestion: 'check the path given to --passphrase-file'})
    }
    if (text.length === 0) throw new UserError(`the passphrase file ${file} is empty`, {code: 'passphrase_empty', exit: ExitCode.usage, suggestion: 'write the passphrase in it, on one line'})
    return text
  }
}

/** Where a passphrase comes from, in order: --passphrase-file, OUTPOST_KEY_PASSPHRASE, a prompt in a terminal. */
export function passphraseAvailable(options: PassphraseOptions): boolean {
  return Boolean(options.fromFile || process.env.OUTPOST_KEY_PASSPHRASE || (options.mayPrompt ?? canPrompt()))
}

export async function getPassphrase(options: PassphraseOptions): Promise<string> {
  if (options.fromFile) return options.fromFile()
  const fromEnv = process.env.OUTPOST_KEY_PASSPHRASE
  if (fromEnv) return fromEnv
  if (!(options.mayPrompt ?? canPrompt())) {
    throw new UserError('a key passphrase is needed and there is no terminal to ask', {
      code: 'passphrase_required',
      exit: ExitCode.usage,
      suggestion: 'pass --passphrase-file FILE or set OUTPOST_KEY_PASSPHRASE',
    })
  }
  const {password} = await import('@inquirer/prompts')
  // Asked on stderr, so a command's --json output on stdout stays clean.
  const ask = (message: string) => password({message, mask: '*'}, {output: process.stderr})
  const first = await ask('Key passphrase')
  if (first.length === 0) throw new UserError('an empty passphrase protects nothing', {code: 'passphrase_empty', exit: ExitCode.usage, suggestion: 'run the command again and type a passphrase'})
  if (options.confirm && (await ask('Repeat the passphrase')) !== first) {
    throw new UserError('the two passphrases differ', {code: 'passphrase_mismatch', exit: ExitCode.usage, suggestion: 'run the command again'})
  }
  return first
}
