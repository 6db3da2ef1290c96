import {readFileSync, writeFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

/**
 * oclif lists commands in the order the filesystem returns them, which differs between machines; sorted, the
 * manifest is the same everywhere, so CI can tell a stale one from a reordered one.
 */
const file = fileURLToPath(new URL('../oclif.manifest.json', import.meta.url))
const manifest = JSON.parse(readFileSync(file, 'utf8')) as {commands: Record<string, unknown>; version: string}
const commands = Object.fromEntries(Object.entries(manifest.commands).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
writeFileSync(file, JSON.stringify({...manifest, commands}, null, 2))
