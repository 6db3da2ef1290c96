/** Exit codes, documented in the README. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  config: 3,
  refused: 4,
  unreachable: 5,
  checksFailed: 6,
  bug: 70,
} as const
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export interface UserErrorOptions {
  /** A stable, machine-readable code for --json output and tests. */
  code?: string
  /** One line saying what to do about it. */
  suggestion?: string
  exit?: ExitCodeValue
  cause?: unknown
}

/** An expected failure: the user gets one line of cause and one of remedy, never a stack trace. */
export class UserError extends Error {
  readonly code: string
  readonly suggestion: string | undefined
  readonly exit: ExitCodeValue

  constructor(message: string, options: UserErrorOptions = {}) {
    super(message, {cause: options.cause})
    this.name = 'UserError'
    this.code = options.code ?? 'failed'
    this.suggestion = options.suggestion
    this.exit = options.exit ?? ExitCode.failed
  }
}

/** Something that should never happen: printed with its stack and a request to report it. */
export class BugError extends Error {
  constructor(message: string, options: {cause?: unknown} = {}) {
    super(message, options)
    this.name = 'BugError'
  }
}

export function isUserError(error: unknown): error is UserError {
  return error instanceof UserError
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
