import {randomBytes} from 'node:crypto'
import {closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync} from 'node:fs'
import {basename, dirname, join} from 'node:path'

/**
 * Writes a file so that a crash leaves either the old content or the new one, never half of it:
 * temp file in the same directory, fsync, rename, fsync the directory.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const dir = dirname(path)
  mkdirSync(dir, {recursive: true})
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  const fd = openSync(temp, 'wx', mode)
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data)
    fsyncSync(fd)
  } catch (error) {
    closeSync(fd)
    rmSync(temp, {force: true})
    throw error
  }
  closeSync(fd)
  try {
    renameSync(temp, path)
  } catch (error) {
    rmSync(temp, {force: true})
    throw error
  }
  fsyncDirectory(dir)
}

export function fsyncDirectory(dir: string): void {
  let fd: number | undefined
  try {
    fd = openSync(dir, 'r')
    fsyncSync(fd)
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

/** A compact UTC time that sorts as text and is safe in file names: `20261121T203000Z`. */
export function timestampSlug(now = new Date()): string {
  return now.toISOString().replaceAll(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')
}

/** A name for a backup copy that sorts by time: `<path>.bak-20261121T203000Z`. */
export function backupPath(path: string, now = new Date()): string {
  return `${path}.bak-${timestampSlug(now)}`
}
