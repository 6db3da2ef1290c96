import {existsSync, rmSync, statSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {execa} from 'execa'

import type {LoadedConfig} from '../core/config/load.js'
import {ExitCode, UserError} from '../core/errors.js'
import {writeFileAtomic} from '../core/files.js'
import {renderTemplate} from '../core/templates.js'

export const UNIT_NAME = 'outpost.service'

/**
 * Node's flags for the agent as a service. V8 grows the young generation to 2 × 16 MiB under a steady stream of work
 * and keeps it; 4 MiB halves hold what the agent's work leaves alive between collections, so the agent with 1000
 * contracts needs ~25 MiB less (and forks a backend's process faster), for the same CPU per contract (`npm run bench`).
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=4'] as const

export interface ServiceOptions {
  user: string
  group: string
  configDir: string
  /** Absolute path of the node binary and of the CLI entry point, so the unit doesn't depend on PATH. */
  nodePath: string
  binPath: string
  unitDir: string
  logFile?: string
  logrotateDir: string
}

export interface RenderedService {
  unit: string
  unitFile: string
  logrotate?: string
  logrotateFile?: string
  /** What the unit points at that the service won't be able to use, and what to do instead. */
  warnings: string[]
}

/** systemd splits ExecStart on spaces: paths with spaces are quoted. */
function quote(argument: string): string {
  return /[\s"\\]/.test(argument) ? `"${argument.replaceAll(/["\\]/g, (char) => `\\${char}`)}"` : argument
}

/**
 * The unit sets PrivateTmp=yes: the service gets an empty /tmp and /var/tmp of its own (systemd.exec(5)), so a config,
 * key, state or log path under them is one it can't see, and the agent would fail at every start.
 */
function privateTmpWarnings(paths: [what: string, path: string | undefined][]): string[] {
  const hidden = paths.filter((entry): entry is [string, string] => entry[1] !== undefined && /^\/(var\/)?tmp(\/|$)/.test(resolve(entry[1])))
  if (hidden.length === 0) return []
  const listed = [...new Map(hidden.map(([what, path]) => [path, `${what} ${path}`])).values()].join(', ')
  return [
    `the service won't see its files: ${listed} ${hidden.length === 1 ? 'is' : 'are'} under /tmp or /var/tmp, and the unit's PrivateTmp=yes gives it an empty /tmp and /var/tmp of its own; ` +
      'keep the config and state elsewhere (for example OUTPOST_CONFIG_DIR=/var/lib/outpost outpost init) and install again',
  ]
}

export function renderService(loaded: LoadedConfig, options: ServiceOptions): RenderedService {
  const readWrite = [loaded.paths.stateDir, ...(options.logFile ? [dirname(options.logFile)] : [])]
  const unit = renderTemplate('outpost.service', {
    user: options.user,
    group: options.group,
    config_dir: quote(options.configDir),
    exec_start: [options.nodePath, ...AGENT_NODE_FLAGS, options.binPath, 'run', '--config', loaded.path].map(quote).join(' '),
    // Within TimeoutStopSec (45 s): the agent's own --shutdown-timeout (30 s) plus its outbox flush.
    exec_stop: [options.nodePath, options.binPath, 'drain', '--config', loaded.path, '--timeout', '40s'].map(quote).join(' '),
    log_output: options.logFile ? `StandardOutput=append:${options.logFile}\nStandardError=append:${options.logFile}` : 'StandardOutput=journal\nStandardError=journal',
    read_write_paths: [...new Set(readWrite)].map(quote).join(' '),
  })
  const warnings = privateTmpWarnings([
    ['the config file', loaded.path],
    ['the config directory', options.configDir],
    ['the agent key', loaded.paths.keyFile],
    ['the state directory', loaded.paths.stateDir],
    ['the log file', options.logFile],
  ])
  const rendered: RenderedService = {unit, unitFile: join(options.unitDir, UNIT_NAME), warnings}
  if (options.logFile) {
    rendered.logrotate = renderTemplate('outpost.logrotate', {log_file: options.logFile, user: options.user, group: options.group})
    rendered.logrotateFile = join(options.logrotateDir, 'outpost')
  }
  return rendered
}

export function systemdRunning(): boolean {
  return existsSync('/run/systemd/system')
}

async function systemctl(...args: string[]): Promise<void> {
  const result = await execa('systemctl', args, {reject: false})
  if (result.failed) {
    throw new UserError(`systemctl ${args.join(' ')} failed: ${result.stderr.trim() || result.shortMessage}`, {code: 'systemctl_failed', suggestion: 'see `journalctl -u outpost` and `systemctl status outpost`'})
  }
}

export interface InstallResult {
  unit_file: string
  logrotate_file?: string
  started: boolean
  warnings: string[]
  next_steps: string[]
}

/** Files the service user must be able to read; a key owned by another user is the usual first-start failure. */
function ownershipWarnings(loaded: LoadedConfig, uid: number | undefined, user: string): string[] {
  if (uid === undefined) return [`user ${user} does not exist: create it (the installer does: install.sh) before starting the service`]
  return [loaded.path, loaded.paths.keyFile]
    .filter((file) => existsSync(file) && statSync(file).uid !== uid)
    .map((file) => `${file} is not owned by ${user}: run \`chown ${user}: ${file}\``)
}

async function uidOf(user: string): Promise<number | undefined> {
  const result = await execa('id', ['-u', user], {reject: false})
  return result.failed ? undefined : Number(result.stdout.trim())
}

export async function installService(loaded: LoadedConfig, options: ServiceOptions & {start: boolean}): Promise<InstallResult> {
  const rendered = renderService(loaded, options)
  try {
    writeFileAtomic(rendered.unitFile, rendered.unit, 0o644)
    if (rendered.logrotate && rendered.logrotateFile) writeFileAtomic(rendered.logrotateFile, rendered.logrotate, 0o644)
  } catch (error) {
    throw new UserError(`cannot write ${rendered.unitFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {
      code: 'unit_not_written',
      exit: ExitCode.failed,
      suggestion: 'run as root (sudo outpost service install), or choose another --unit-dir',
    })
  }
  const warnings = [...rendered.warnings, ...ownershipWarnings(loaded, await uidOf(options.user), options.user)]
  let started = false
  const nextSteps: string[] = []
  if (systemdRunning()) {
    await systemctl('daemon-reload')
    if (options.start) {
      await systemctl('enable', '--now', UNIT_NAME)
      started = true
    } else {
      nextSteps.push(`systemctl enable --now ${UNIT_NAME}`)
    }
  } else {
    nextSteps.push(`systemd is not running here: copy ${rendered.unitFile} to a systemd host, or run \`outpost run\` under your supervisor`)
  }
  nextSteps.push('Follow the agent with `journalctl -u outpost -f` and check it with `outpost service status`.')
  return {unit_file: rendered.unitFile, ...(rendered.logrotateFile ? {logrotate_file: rendered.logrotateFile} : {}), started, warnings, next_steps: nextSteps}
}

export async function uninstallService(unitDir: string, logrotateDir: string): Promise<{removed: string[]}> {
  const unitFile = join(unitDir, UNIT_NAME)
  if (systemdRunning() && existsSync(unitFile)) {
    await systemctl('disable', '--now', UNIT_NAME)
  }
  const removed = [unitFile, join(logrotateDir, 'outpost')].filter((file) => existsSync(file))
  for (const file of removed) {
    try {
      rmSync(file)
    } catch (error) {
      throw new UserError(`cannot remove ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, {code: 'unit_not_removed', suggestion: 'run as root (sudo outpost service uninstall)'})
    }
  }
  if (systemdRunning() && removed.length > 0) await systemctl('daemon-reload')
  return {removed}
}

export interface ServiceStatus {
  unit_file: string
  installed: boolean
  systemd: boolean
  active?: string
  health?: {url: string; ok: boolean; detail: string}
}

export async function serviceStatus(unitDir: string, metricsListen: string | undefined): Promise<ServiceStatus> {
  const unitFile = join(unitDir, UNIT_NAME)
  const status: ServiceStatus = {unit_file: unitFile, installed: existsSync(unitFile), systemd: systemdRunning()}
  if (status.systemd && status.installed) {
    // is-active exits non-zero for every state but active, and prints the state either way.
    const answer = await execa('systemctl', ['is-active', UNIT_NAME], {reject: false})
    status.active = answer.stdout.trim() || 'unknown'
  }
  if (metricsListen) {
    const url = `http://${metricsListen}/healthz`
    try {
      const response = await fetch(url, {signal: AbortSignal.timeout(2000)})
      status.health = {url, ok: response.ok, detail: `HTTP ${response.status} ${(await response.text()).trim().slice(0, 200)}`}
    } catch (error) {
      status.health = {url, ok: false, detail: `no answer (${error instanceof Error ? error.message : String(error)})`}
    }
  }
  return status
}
