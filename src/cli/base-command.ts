import {Command} from '@oclif/core/command'
import * as Errors from '@oclif/core/errors'
import * as Flags from '@oclif/core/flags'
import type * as Interfaces from '@oclif/core/interfaces'

import {configDir, configFilePath} from '../core/config/paths.js'
import {loadConfig, type LoadedConfig} from '../core/config/load.js'
import {BugError, ExitCode, UserError} from '../core/errors.js'
import {printable} from '../core/printable.js'
import {closestMatch} from '../core/suggest.js'
import {readKeyFile, type StoredKey} from '../core/keys.js'
import {paint} from '../ui/colors.js'
import {explainApiError, isApiError} from './api-errors.js'
import {getPassphrase, passphraseAvailable, type PassphraseReader} from '../ui/passphrase.js'
import type {MainKeyFile} from './flags.js'

/** What oclif parses flags and args into. */
type ParsedValues = Record<string, unknown>

interface RenderedError {
  code: string
  message: string
  suggestion?: string
  exit: number
}

interface KeyFlags {
  config?: string
  'passphrase-file'?: PassphraseReader
}

interface MainKeyFlags extends KeyFlags {
  'main-key-file'?: MainKeyFile
}

// oclif wraps what a flag's parser throws in "Parsing --flag ... See more help with --help"; a UserError names its flag.
const FLAG_PARSE_WRAPPING = /^Parsing --[\w-]+ \n\t([\s\S]*)\nSee more help with --help$/

function isExitError(error: unknown): boolean {
  return error instanceof Errors.ExitError
}

function oclifExit(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null || !('oclif' in error)) return undefined
  const meta = (error as {oclif?: {exit?: unknown}}).oclif
  return typeof meta?.exit === 'number' ? meta.exit : undefined
}

/**
 * Every command's base: --json (the value run() returns), --config, the keys read one way, and one way of reporting
 * errors: a UserError is a cause and a remedy with its exit code, a usage error exits 2, anything else is a bug with
 * its stack.
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

  private readonly loadedConfigs = new Map<string, LoadedConfig>()
  /** --allow-insecure-http was given (see marketplaceFlags): it applies to every config this command loads. */
  private insecureHttpAllowed = false

  /** oclif's parse, noting the flags that change how the config is read. */
  protected override async parse<F extends ParsedValues, B extends ParsedValues, A extends ParsedValues>(
    options?: Interfaces.Input<F, B, A>,
    argv?: string[],
  ): Promise<Interfaces.ParserOutput<F, B, A>> {
    const parsed = await super.parse(options, argv)
    if ((parsed.flags as Record<string, unknown>)['allow-insecure-http'] === true) this.insecureHttpAllowed = true
    return parsed
  }

  /** Whether this run allows an http:// endpoint off loopback (--allow-insecure-http, OUTPOST_ALLOW_INSECURE_HTTP). */
  protected get allowsInsecureHttp(): boolean {
    return this.insecureHttpAllowed
  }

  /** The config, loaded once per command however many parts of it ask, with --allow-insecure-http applied. */
  protected loadConfig(flag: string | undefined): LoadedConfig {
    const file = this.configFile(flag)
    const loaded = this.loadedConfigs.get(file) ?? loadConfig(file)
    if (this.insecureHttpAllowed) loaded.config.marketplace.allow_insecure_http = true
    this.loadedConfigs.set(file, loaded)
    return loaded
  }

  /** Where an encrypted key's passphrase comes from: --passphrase-file, OUTPOST_KEY_PASSPHRASE, a prompt; none otherwise. */
  protected passphrase(flags: KeyFlags): PassphraseReader | undefined {
    const options = {fromFile: flags['passphrase-file']}
    return passphraseAvailable(options) ? () => getPassphrase(options) : undefined
  }

  /** The agent key of the config. */
  protected async agentKey(flags: KeyFlags): Promise<StoredKey> {
    return readKeyFile(this.loadConfig(flags.config).paths.keyFile, {passphrase: this.passphrase(flags)})
  }

  /** The provider main key; `purpose` names in the error what needs it, since an agent key can never do it (§3). */
  protected async mainKey(flags: MainKeyFlags, purpose: string): Promise<StoredKey> {
    const file = flags['main-key-file']
    if (!file) {
      throw new UserError(`${purpose} is signed with the provider main key, and no main key file was given`, {
        code: 'main_key_required',
        exit: ExitCode.usage,
        suggestion: 'pass --main-key-file FILE or set OUTPOST_MAIN_KEY_FILE (the agent key is never allowed to do this)',
      })
    }
    return readKeyFile(file.path, {passphrase: this.passphrase(flags), mainKey: true})
  }

  /** A warning on stderr, on one line however long (oclif's warn wraps it); with --json it is in the JSON instead. */
  protected warning(text: string): void {
    if (!this.jsonEnabled()) process.stderr.write(`${paint.yellow('Warning:', process.stderr)} ${printable(text)}\n`)
  }

  protected renderError(error: unknown): RenderedError {
    if (isApiError(error)) return explainApiError(error)
    if (error instanceof UserError) {
      const message = FLAG_PARSE_WRAPPING.exec(error.message)?.[1] ?? error.message
      return {code: error.code, message, suggestion: error.suggestion, exit: error.exit}
    }
    const usageExit = oclifExit(error)
    if (usageExit !== undefined && error instanceof Error) {
      const isParseError = error.constructor.name.endsWith('Error') && usageExit === 2
      const help = `\`outpost ${this.id?.replaceAll(':', ' ') ?? ''} --help\``.replace('  ', ' ')
      return {
        code: isParseError ? 'usage' : 'failed',
        message: error.message.replace(/\nSee more help with --help$/, ''),
        suggestion: isParseError ? `${this.flagGuess(error)}see ${help}` : undefined,
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

  /** "did you mean --verify-api? " for a mistyped flag, from this command's own flags; empty when nothing is close. */
  private flagGuess(error: Error): string {
    if (!(error instanceof Errors.CLIError) || !('flags' in error) || !Array.isArray(error.flags)) return ''
    const known = Object.entries({...this.ctor.flags, ...this.ctor.baseFlags}).flatMap(([name, flag]) => [`--${name}`, ...(flag.char ? [`-${flag.char}`] : [])])
    const guesses = error.flags.map((typed: unknown) => closestMatch(String(typed).replace(/=.*$/, ''), [...known, '--json', '--help']))
    const found = guesses.filter((guess): guess is string => guess !== undefined)
    return found.length > 0 ? `did you mean ${found.join(', ')}? ` : ''
  }

  override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    if (isExitError(error)) throw error
    const rendered = this.renderError(error)
    if (this.jsonEnabled()) {
      const {exit: _exit, ...body} = rendered
      if (body.code === 'internal') body.message = body.message.split('\n')[0] ?? body.message
      this.logJson({error: body})
    } else {
      // A message may quote what a remote party wrote: its control characters are shown, not acted on.
      process.stderr.write(`${paint.red('Error:')} ${printable(rendered.message, {multiline: true})}\n`)
      if (rendered.suggestion) process.stderr.write(`${paint.dim('→')} ${printable(rendered.suggestion, {multiline: true})}\n`)
    }
    this.exit(rendered.exit)
    return undefined
  }
}
