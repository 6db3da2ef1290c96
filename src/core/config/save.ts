import {existsSync, readFileSync} from 'node:fs'

import {backupPath, writeFileAtomic} from '../files.js'
import {parseToml, validateConfig} from './load.js'

/** A config may hold a secret (a Proxmox or Hetzner token, a webhook URL), so every write of one is owner-only. */
export const CONFIG_FILE_MODE = 0o600

export interface SavedConfig {
  /** The previous file, kept (also 0600) when there was one. */
  backup?: string
}

/**
 * The one way a config file is written: the text is validated first (without OUTPOST_* overrides: only the file
 * counts), the old file is kept as a timestamped backup, and the new one replaces it atomically with mode 0600.
 */
export function writeConfigFile(file: string, text: string): SavedConfig {
  validateConfig(parseToml(text, file), file, {}, text)
  let backup: string | undefined
  if (existsSync(file)) {
    backup = backupPath(file)
    writeFileAtomic(backup, readFileSync(file), CONFIG_FILE_MODE)
  }
  writeFileAtomic(file, text, CONFIG_FILE_MODE)
  return backup ? {backup} : {}
}

/** Sets `key = value` in `[section]` of a config file, keeping every comment and line around it (see writeConfigFile). */
export function setConfigValues(file: string, section: string, values: Record<string, string | number | boolean>): SavedConfig {
  return writeConfigFile(file, setConfigText(readFileSync(file, 'utf8'), section, values))
}

/** The same edit on config text: each `key = value` set in `[section]` (added when missing), every other line kept. */
export function setConfigText(text: string, section: string, values: Record<string, string | number | boolean>): string {
  let lines = text.split('\n')
  for (const [key, value] of Object.entries(values)) lines = setLine(lines, section, key, JSON.stringify(value))
  return lines.join('\n')
}

function setLine(lines: string[], section: string, key: string, tomlValue: string): string[] {
  const header = lines.findIndex((line) => line.trim() === `[${section}]`)
  if (header === -1) return [...lines, '', `[${section}]`, `${key} = ${tomlValue}`]
  let end = lines.findIndex((line, index) => index > header && /^\s*\[/.test(line))
  if (end === -1) end = lines.length
  const assignment = new RegExp(`^\\s*#?\\s*${key}\\s*(=|\\bis\\b)`)
  const existing = lines.findIndex((line, index) => index > header && index < end && assignment.test(line))
  const updated = [...lines]
  if (existing === -1) updated.splice(header + 1, 0, `${key} = ${tomlValue}`)
  else updated[existing] = `${key} = ${tomlValue}`
  return updated
}
