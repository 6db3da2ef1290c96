import * as Flags from '@oclif/core/flags'
import type * as Interfaces from '@oclif/core/interfaces'

import type {IntegerAnswer, TextAnswer} from '../setup/answers.js'

/** The flag of a wizard's answer, made from its row in the wizard's table of answers. */
export function answerFlag(answer: IntegerAnswer): Interfaces.OptionFlag<number>
export function answerFlag(answer: TextAnswer & {default: string}): Interfaces.OptionFlag<string>
export function answerFlag(answer: TextAnswer): Interfaces.OptionFlag<string | undefined>
export function answerFlag(answer: IntegerAnswer | TextAnswer): Interfaces.OptionFlag<number> | Interfaces.OptionFlag<string> | Interfaces.OptionFlag<string | undefined> {
  const {description, env} = answer
  if (answer.kind === 'integer') return Flags.integer({description, env, default: answer.default, min: answer.min, max: answer.max})
  return answer.default === undefined ? Flags.string({description, env}) : Flags.string({description, env, default: answer.default})
}
