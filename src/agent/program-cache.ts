import {mkdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {writeFileAtomic} from '../core/files.js'
import {sha256Hex} from '../core/signing.js'

/** The bytes did not match the digest they were asked for: the marketplace (or the disk) sent something else. */
export class DigestMismatchError extends Error {
  constructor(what: string, expected: string, actual: string) {
    super(`the ${what} does not match its digest: expected sha256 ${expected}, got ${actual}`)
    this.name = 'DigestMismatchError'
  }
}

/** Checks bytes against the sha256 hex digest they should have (§12). */
export function checkDigest(bytes: Buffer, digest: string, what: string): Buffer {
  const actual = sha256Hex(bytes)
  if (actual !== digest) throw new DigestMismatchError(what, digest, actual)
  return bytes
}

/**
 * §12 programs, kept by digest under the state dir: a program is fetched once however many jobs run it. Bytes are
 * checked against the digest when fetched and again when read back, so a damaged file is fetched anew.
 */
export class ProgramCache {
  private readonly dir: string

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'programs')
    mkdirSync(this.dir, {recursive: true, mode: 0o700})
  }

  async get(digest: string, fetchBytes: () => Promise<Buffer>): Promise<Buffer> {
    if (!/^[0-9a-f]{64}$/.test(digest)) throw new DigestMismatchError('program', 'a sha256 hex digest', digest)
    const path = join(this.dir, digest)
    try {
      return checkDigest(readFileSync(path), digest, 'cached program')
    } catch {
      // Not cached yet, or damaged: fetched again below.
    }
    const bytes = checkDigest(await fetchBytes(), digest, 'program')
    writeFileAtomic(path, bytes, 0o600)
    return bytes
  }
}
