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
}

/** The passphrase in a file, read only when a key asks for it: most keys aren't encrypted. */
export function passphraseFromFile(file: string): PassphraseReader {
  return async () => {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '')
    } catch {
      throw new UserError(`cannot read the passphrase file ${file}`, {code: 'passphrase_file', exit: ExitCode.config, suggestion: 'check the path given to --passphrase-file'})
    }
  }
}

/** Where a passphrase comes from, in order: --passphrase-file, OUTPOST_KEY_PASSPHRASE, a prompt in a terminal. */
export function passphraseAvailable(options: PassphraseOptions): boolean {
  return Boolean(options.fromFile || process.env.OUTPOST_KEY_PASSPHRASE || canPrompt())
}

export async function getPassphrase(options: PassphraseOptions): Promise<string> {
  if (options.fromFile) return options.fromFile()
  const fromEnv = process.env.OUTPOST_KEY_PASSPHRASE
  if (fromEnv) return fromEnv
  if (!canPrompt()) {
    throw new UserError('a key passphrase is needed and there is no terminal to ask', {
      code: 'passphrase_required',
      exit: ExitCode.config,
      suggestion: 'pass --passphrase-file FILE or set OUTPOST_KEY_PASSPHRASE',
    })
  }
  const {password} = await import('@inquirer/prompts')
  const first = await password({message: 'Key passphrase', mask: '*'})
  if (options.confirm) {
    const second = await password({message: 'Repeat the passphrase', mask: '*'})
    if (first !== second) throw new UserError('the two passphrases differ', {code: 'passphrase_mismatch', suggestion: 'run the command again'})
  }
  if (first.length === 0) throw new UserError('an empty passphrase protects nothing', {code: 'passphrase_empty', suggestion: 'choose a passphrase, or leave out --encrypt'})
  return first
}
