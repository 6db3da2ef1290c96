import {copyFileSync, readFileSync} from 'node:fs'

import {backupPath, writeFileAtomic} from '../files.js'
import {parseToml, validateConfig} from './load.js'

/**
 * Sets `key = value` in `[section]` of a config file, keeping every comment and line around it. The result is
 * validated before it replaces the file (atomically), and the old file is kept as a backup.
 */
export function setConfigValues(file: string, section: string, values: Record<string, string | number | boolean>): {backup: string} {
  const text = setConfigText(readFileSync(file, 'utf8'), section, values)
  validateConfig(parseToml(text, file), file, {}, text)
  const backup = backupPath(file)
  copyFileSync(file, backup)
  writeFileAtomic(file, text, 0o644)
  return {backup}
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
