/** One field a request got wrong (PROTOCOL §4: `details` names each field). */
export interface FieldIssue {
  field: string
  message: string
}

/** A failure the server answers with the §4 envelope: `{error: {code, message, details?}}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: readonly unknown[],
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message)
    this.name = 'HttpError'
  }

  toBody(): {error: {code: string; message: string; details?: readonly unknown[]}} {
    return {error: {code: this.code, message: this.message, ...(this.details ? {details: this.details} : {})}}
  }
}

export const notFound = (what: string) => new HttpError(404, 'not_found', `${what} not found`)

export const unauthenticated = (code: string, message: string) => new HttpError(401, code, message)

export const invalidTransition = (message: string) => new HttpError(409, 'invalid_transition', message)

export function invalidBody(issues: FieldIssue[]): HttpError {
  return new HttpError(400, 'invalid_body', issues.map((issue) => `${issue.field}: ${issue.message}`).join('; '), issues)
}
