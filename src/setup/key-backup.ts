import {copyFileSync, existsSync, statSync} from 'node:fs'
import {resolve} from 'node:path'

import {ExitCode, UserError} from '../core/errors.js'
import {backupPath} from '../core/files.js'
import {describeKey, readKeyFile, readKeyFileContent, writeKeyFile} from '../core/keys.js'

/**
 * `keys export` / `keys import`: a backup of the provider main key is an encrypted key file (scrypt + secretbox, the
 * format every key file has), so it opens as `--main-key-file` as it is. Never a plain one: the secret seed does not
 * leave this host unencrypted.
 */

export interface BackupResult {
  file: string
  public_key: string
  fingerprint: string
  encrypted: true
  /** Where the file that was there before went (with --force). */
  replaced?: string
}

interface BackupOptions {
  /** The passphrase: the main key's when it is encrypted, else the new one of the backup. */
  passphrase: () => Promise<string>
  force: boolean
}

/** Refuses to write over a file unless --force; with it the old file is kept as a timestamped copy. */
function makeRoom(target: string, force: boolean, what: string): string | undefined {
  if (!existsSync(target)) return undefined
  if (!statSync(target).isFile()) {
    throw new UserError(`${target} is not a file`, {code: 'not_a_file', exit: ExitCode.usage, suggestion: `name the ${what} file itself`})
  }
  if (!force) {
    throw new UserError(`${target} exists already`, {
      code: 'file_exists',
      suggestion: `name another file, or pass --force to replace it (the old one is kept as ${target}.bak-<time>)`,
    })
  }
  const kept = backupPath(target)
  copyFileSync(target, kept)
  return kept
}

export async function exportMainKey(options: BackupOptions & {mainKeyFile: string; to: string}): Promise<BackupResult> {
  if (resolve(options.to) === resolve(options.mainKeyFile)) {
    throw new UserError('the backup would replace the main key file itself', {code: 'same_file', exit: ExitCode.usage, suggestion: 'name a backup file elsewhere, like /media/usb/provider-main.backup'})
  }
  const passphrase = await options.passphrase()
  const key = await readKeyFile(options.mainKeyFile, {mainKey: true, passphrase: async () => passphrase})
  const replaced = makeRoom(options.to, options.force, 'backup')
  writeKeyFile(options.to, key, passphrase)
  return {file: options.to, ...describeKey(key.publicKey), encrypted: true, ...(replaced ? {replaced} : {})}
}

export async function importMainKey(options: BackupOptions & {from: string; to: string}): Promise<BackupResult> {
  const content = readKeyFileContent(options.from, {mainKey: true})
  if (!('encrypted' in content)) {
    throw new UserError(`${options.from} is a plain key file, not an encrypted backup`, {
      code: 'not_a_backup',
      exit: ExitCode.usage,
      suggestion: 'make the backup with `outpost keys export`; a plain main key file is used as --main-key-file as it is',
    })
  }
  if (resolve(options.to) === resolve(options.from)) {
    throw new UserError('the backup and the restored key would be the same file', {code: 'same_file', exit: ExitCode.usage, suggestion: 'pass --to with the path the main key belongs at'})
  }
  const passphrase = await options.passphrase()
  // Opened before anything is written: a wrong passphrase or a damaged backup leaves the target as it was.
  const key = await readKeyFile(options.from, {mainKey: true, passphrase: async () => passphrase})
  const replaced = makeRoom(options.to, options.force, 'main key')
  writeKeyFile(options.to, key, passphrase)
  return {file: options.to, ...describeKey(key.publicKey), encrypted: true, ...(replaced ? {replaced} : {})}
}
