import {Command, Errors, Flags} from '@oclif/core'

import {configDir, configFilePath} from '../core/config/paths.js'
import {loadConfig, type LoadedConfig} from '../core/config/load.js'
import {BugError, ExitCode, UserError} from '../core/errors.js'
import {paint} from './colors.js'

interface RenderedError {
  code: string
  message: string
  suggestion?: string
  exit: number
}

function isExitError(error: unknown): boolean {
  return error instanceof Errors.ExitError
}

function oclifExit(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null || !('oclif' in error)) return undefined
  const meta = (error as {oclif?: {exit?: unknown}}).oclif
  return typeof meta?.exit === 'number' ? meta.exit : undefined
}

/**
 * Every command's base: --json (the value run() returns), --config, and one way of reporting errors: a UserError is a
 * cause and a remedy with its exit code, a usage error exits 2, anything else is a bug with its stack.
 */
export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    config: Flags.string({
      description: 'config file (default: outpost.toml in the config directory)',
      env: 'OUTPOST_CONFIG',
      helpGroup: 'GLOBAL',
    }),
  }

  /** The config directory: OUTPOST_CONFIG_DIR, else oclif's (~/.config/outpost). */
  protected get configDirectory(): string {
    return configDir(this.config.configDir)
  }

  protected configFile(flag: string | undefined): string {
    return configFilePath(flag, this.configDirectory)
  }

  protected loadConfig(flag: string | undefined): LoadedConfig {
    return loadConfig(this.configFile(flag))
  }

  protected renderError(error: unknown): RenderedError {
    if (error instanceof UserError) return {code: error.code, message: error.message, suggestion: error.suggestion, exit: error.exit}
    const usageExit = oclifExit(error)
    if (usageExit !== undefined && error instanceof Error) {
      const isParseError = error.constructor.name.endsWith('Error') && usageExit === 2
      return {
        code: isParseError ? 'usage' : 'failed',
        message: error.message,
        suggestion: isParseError ? `see \`outpost ${this.id?.replaceAll(':', ' ') ?? ''} --help\``.replace('  ', ' ') : undefined,
        exit: usageExit,
      }
    }
    const bug = error instanceof BugError || error instanceof Error ? error : new BugError(String(error))
    return {
      code: 'internal',
      message: `${bug.message}\n${bug.stack ?? ''}`,
      suggestion: 'this is a bug in outpost: please report it with the output above',
      exit: ExitCode.bug,
    }
  }

  override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    if (isExitError(error)) throw error
    const rendered = this.renderError(error)
    if (this.jsonEnabled()) {
      const {exit: _exit, ...body} = rendered
      if (body.code === 'internal') body.message = body.message.split('\n')[0] ?? body.message
      this.logJson({error: body})
    } else {
      process.stderr.write(`${paint.red('Error:')} ${rendered.message}\n`)
      if (rendered.suggestion) process.stderr.write(`${paint.dim('→')} ${rendered.suggestion}\n`)
    }
    this.exit(rendered.exit)
    return undefined
  }
}
