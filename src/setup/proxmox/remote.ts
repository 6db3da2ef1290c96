import {ExitCode, UserError} from '../../core/errors.js'
import {commandLine, type CommandResult} from './ssh.js'

/** What runs a command line on the host: the SSH session, or a stand-in in unit tests. */
export interface CommandRunner {
  exec(command: string, stdin?: string): Promise<CommandResult>
}

/** A command on the host that failed; the message carries its last lines of output. */
export class RemoteCommandError extends UserError {
  constructor(
    readonly command: string,
    readonly result: CommandResult,
    what: string,
  ) {
    const output = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-6).join('\n    ')
    super(`${what} failed on the host (exit ${result.code}): \`${command}\`${output ? `\n    ${output}` : ''}`, {code: 'remote_command_failed', exit: ExitCode.failed})
    this.name = 'RemoteCommandError'
  }
}

/**
 * The Proxmox host as the wizard sees it. Commands that only read run even in a dry run (the plan depends on what is
 * there); commands that change something are recorded and, in a dry run, not run.
 */
export class RemoteHost {
  readonly changes: string[] = []

  constructor(
    private readonly runner: CommandRunner,
    readonly dryRun: boolean,
  ) {}

  read(argv: readonly string[]): Promise<CommandResult> {
    return this.runner.exec(commandLine(argv))
  }

  /** stdout of a read that must succeed. */
  async mustRead(argv: readonly string[], what: string): Promise<string> {
    const command = commandLine(argv)
    const result = await this.runner.exec(command)
    if (result.code !== 0) throw new RemoteCommandError(command, result, what)
    return result.stdout
  }

  /** stdout of a change that must succeed, or undefined in a dry run (nothing ran). */
  async change(argv: readonly string[], what: string, stdin?: string): Promise<string | undefined> {
    const command = commandLine(argv)
    this.changes.push(stdin === undefined ? command : `${command} <<'EOF'\n${stdin}EOF`)
    if (this.dryRun) return undefined
    const result = await this.runner.exec(command, stdin)
    if (result.code !== 0) throw new RemoteCommandError(command, result, what)
    return result.stdout
  }

  /** Writes a file on the host (its directory made first), unless it already holds exactly this text. */
  async writeFile(path: string, content: string, what: string): Promise<'created' | 'updated' | 'unchanged'> {
    const current = await this.read(['cat', path])
    if (current.code === 0 && current.stdout === content) return 'unchanged'
    await this.change(['sh', '-c', 'mkdir -p "$(dirname "$1")" && cat > "$1"', 'sh', path], what, content)
    return current.code === 0 ? 'updated' : 'created'
  }
}
