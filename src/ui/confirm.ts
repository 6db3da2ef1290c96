import {ExitCode, UserError} from '../core/errors.js'
import {canPrompt} from './interactive.js'

export interface ConfirmOptions {
  /** --yes: confirmed in advance. */
  yes: boolean
  /** --json output: a prompt would corrupt it, so --yes is needed as with no terminal. */
  json?: boolean
}

/**
 * Asks before an irreversible step. With --yes it goes ahead; with no terminal (a script, CI) or --json it refuses
 * and says to pass --yes, so a script never hangs on a question nobody sees.
 */
export async function confirmOrRefuse(question: string, action: string, options: ConfirmOptions): Promise<void> {
  if (options.yes) return
  if (options.json || !canPrompt()) {
    throw new UserError(`${action} needs confirmation and there is no terminal to ask`, {
      code: 'confirmation_required',
      exit: ExitCode.usage,
      suggestion: 'pass --yes to confirm it (scripts, CI and --json runs have no prompt)',
    })
  }
  const {confirm} = await import('@inquirer/prompts')
  if (!(await confirm({message: question, default: false}))) {
    throw new UserError(`${action} cancelled: nothing was changed`, {code: 'cancelled'})
  }
}
