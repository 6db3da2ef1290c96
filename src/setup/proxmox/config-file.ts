import {existsSync, readFileSync} from 'node:fs'

import {parseToml, validateConfig} from '../../core/config/load.js'
import {setConfigText, writeConfigFile} from '../../core/config/save.js'
import type {OutpostConfig} from '../../core/config/schema.js'
import {ExitCode, UserError} from '../../core/errors.js'
import {renderTemplate} from '../../core/templates.js'
import {withPassthrough, type GpuPassthroughEntry} from './gpus.js'

export interface ProxmoxConfigValues {
  endpoint: string
  providerPubkey?: string
  keyFile: string
  host: string
  port: number
  tokenId: string
  tokenSecret: string
  tlsFingerprint: string
  node: string
  templateVmid: number
  /** `[gpu] passthrough`, when the wizard mapped GPUs (left as it is otherwise). */
  passthrough?: readonly GpuPassthroughEntry[]
  pool: string
}

export interface ConfigWrite {
  file: string
  status: 'created' | 'updated' | 'unchanged'
  backup?: string
}

/** The config already there, validated (without OUTPOST_* overrides: only what the file says counts). */
export function readExistingConfig(file: string): OutpostConfig | undefined {
  if (!existsSync(file)) return undefined
  return validateConfig(parseToml(readFileSync(file, 'utf8'), file), file, {})
}

function proxmoxValues(values: ProxmoxConfigValues): Record<string, string | number> {
  return {
    host: values.host,
    port: values.port,
    token_id: values.tokenId,
    token_secret: values.tokenSecret,
    tls_fingerprint: values.tlsFingerprint,
    node: values.node,
    template_vmid: values.templateVmid,
    pool: values.pool,
  }
}

/** TOML values written as JSON, the form setConfigText writes, so a second run compares equal. */
function tomlSlots(values: Record<string, string | number>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([key, value]) => [key, JSON.stringify(value)]))
}

function freshConfig(values: ProxmoxConfigValues): string {
  return renderTemplate('outpost-proxmox.toml', {
    endpoint: JSON.stringify(values.endpoint),
    provider_pubkey_line: values.providerPubkey ? `provider_pubkey = ${JSON.stringify(values.providerPubkey)}` : '# provider_pubkey is set by `outpost register`',
    key_file: JSON.stringify(values.keyFile),
    proxmox_section: renderTemplate('outpost-proxmox-section.toml', tomlSlots(proxmoxValues(values))).trimEnd(),
  })
}

/** Puts a [provisioner.proxmox] block right after the [provisioner] section (before its next table), if there is none. */
function withProxmoxSection(text: string, values: ProxmoxConfigValues): string {
  const lines = text.split('\n')
  if (lines.some((line) => line.trim() === '[provisioner.proxmox]')) return text
  const header = lines.findIndex((line) => line.trim() === '[provisioner]')
  const block = renderTemplate('outpost-proxmox-section.toml', tomlSlots(proxmoxValues(values))).trimEnd().split('\n')
  if (header === -1) return [...lines, '', ...block, ''].join('\n')
  let end = lines.findIndex((line, index) => index > header && /^\s*\[/.test(line))
  if (end === -1) end = lines.length
  while (end > header + 1 && lines[end - 1]?.trim() === '') end--
  return [...lines.slice(0, end), '', ...block, ...lines.slice(end)].join('\n')
}

/** The config text to write: the existing file with the wizard's values set (every other line kept), or a fresh one. */
export function configText(existing: string | undefined, values: ProxmoxConfigValues): string {
  let text = existing === undefined ? freshConfig(values) : withProxmoxSection(existing, values)
  text = setConfigText(text, 'marketplace', {endpoint: values.endpoint, ...(values.providerPubkey ? {provider_pubkey: values.providerPubkey} : {})})
  text = setConfigText(text, 'provisioner', {type: 'proxmox'})
  text = setConfigText(text, 'provisioner.proxmox', proxmoxValues(values))
  return values.passthrough ? withPassthrough(text, values.passthrough) : text
}

/**
 * Writes the config (atomically, mode 0600: it holds the token secret), keeping the old file as a timestamped backup;
 * an identical file is left alone. The text is validated before anything is replaced.
 */
export function writeConfig(file: string, values: ProxmoxConfigValues, dryRun: boolean): ConfigWrite {
  const existing = existsSync(file) ? readFileSync(file, 'utf8') : undefined
  const text = configText(existing, values)
  try {
    validateConfig(parseToml(text, file), file, {})
  } catch (error) {
    throw new UserError(`the config the wizard would write to ${file} does not validate: ${error instanceof Error ? error.message : String(error)}`, {
      code: 'config_invalid',
      exit: ExitCode.config,
      suggestion: 'fix the existing file (or move it away) and run the wizard again',
    })
  }
  if (existing === text) return {file, status: 'unchanged'}
  if (dryRun) return {file, status: existing === undefined ? 'created' : 'updated'}
  const {backup} = writeConfigFile(file, text)
  return {file, status: existing === undefined ? 'created' : 'updated', ...(backup ? {backup} : {})}
}
