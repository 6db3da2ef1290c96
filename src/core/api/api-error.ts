import {ExitCode, UserError, type ExitCodeValue} from '../errors.js'

function exitFor(status: number): ExitCodeValue {
  if (status === 401 || status === 403) return ExitCode.refused
  return ExitCode.failed
}

/**
 * A marketplace answer that is an error (PROTOCOL §4), or no answer that can be used. `unknown` tells the two
 * apart: true when there was no answer (status 0: unreachable, timed out) or an answer that could not be read (a
 * 2xx whose body does not parse, a body over the size limit, a connection cut mid-body). Then the request may or
 * may not have taken effect: the caller re-reads the state or repeats an idempotent request, and never takes it
 * for a refusal. `refused` is a readable 4xx (other than 429): the marketplace said no.
 */
export class ApiError extends UserError {
  readonly status: number
  readonly apiCode: string
  readonly details: unknown[] | undefined
  readonly retryAfterMs: number | undefined
  readonly unknown: boolean

  constructor(init: {
    status: number
    apiCode: string
    message: string
    details?: unknown[]
    retryAfterMs?: number
    suggestion?: string
    cause?: unknown
    /** Defaults to true for status 0 (no answer). */
    unknown?: boolean
  }) {
    super(init.message, {
      code: init.apiCode,
      exit: init.status === 0 ? ExitCode.unreachable : exitFor(init.status),
      suggestion: init.suggestion,
      cause: init.cause,
    })
    this.name = 'ApiError'
    this.status = init.status
    this.apiCode = init.apiCode
    this.details = init.details
    this.retryAfterMs = init.retryAfterMs
    this.unknown = init.unknown ?? init.status === 0
  }

  /** PROTOCOL §4: retry 429, 5xx and network errors (and any answer that could not be read); never another 4xx. */
  get retryable(): boolean {
    return this.unknown || this.status === 429 || this.status >= 500
  }

  /** The marketplace read the request and refused it (a 4xx other than 429): repeating it will not help. */
  get refused(): boolean {
    return !this.unknown && this.status >= 400 && this.status < 500 && this.status !== 429
  }
}
