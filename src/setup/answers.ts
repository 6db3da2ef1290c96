import {ExitCode, UserError} from '../core/errors.js'

/**
 * A question a wizard may ask, and where else its answer comes from: the flag of the same name and an environment
 * variable. Commands make their flags from these, and the "missing answers" error names them from the same table.
 */
interface Answer {
  readonly env: string
  readonly description: string
}

export interface TextAnswer extends Answer {
  readonly kind: 'text'
  readonly default?: string
}

export interface IntegerAnswer extends Answer {
  readonly kind: 'integer'
  readonly default: number
  readonly min: number
  readonly max?: number
}

export type AnswerTable = Readonly<Record<string, TextAnswer | IntegerAnswer>>

/** The value an answer has once its flag is parsed. */
export type AnswerValue<A> = A extends IntegerAnswer ? number : A extends {default: string} ? string : string | undefined

/** The answers of a table, by flag name. */
export type AnswersOf<T extends AnswerTable> = {readonly [K in keyof T]: AnswerValue<T[K]>}

/** An answer that nobody gave and nobody can be asked for, and why it is needed. */
export interface MissingAnswer<T extends AnswerTable> {
  name: keyof T & string
  why: string
}

export function missingAnswersError<T extends AnswerTable>(table: T, missing: readonly MissingAnswer<T>[]): UserError {
  const lines = missing.map(({name, why}) => `--${name} (or ${table[name]?.env}): ${why}`)
  return new UserError(`missing answers, and nothing may prompt here (no terminal, CI=true, --yes or --json):\n  ${lines.join('\n  ')}`, {
    code: 'missing_answers',
    exit: ExitCode.usage,
    suggestion: `pass ${missing.map(({name}) => `--${name}`).join(', ')}`,
  })
}
