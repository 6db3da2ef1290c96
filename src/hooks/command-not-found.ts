import {toConfiguredId} from '@oclif/core/util/ids'
import type {Hook} from '@oclif/core/hooks'

import {closestMatch} from '../core/suggest.js'
import {paint} from '../ui/colors.js'

/**
 * A mistyped command: always a suggestion (also off a terminal, where oclif's plugin gives none), never a prompt that
 * runs another command than the one typed, and exit 2 like every other usage error. With --json, the error is JSON.
 */
const hook: Hook.CommandNotFound = async function (options) {
  const {config} = options
  const hidden = new Set(config.commands.filter((command) => command.hidden).map((command) => command.id))
  const candidates = [...config.commandIDs, ...config.commands.flatMap((command) => command.aliases)].filter((id) => !hidden.has(id))
  const typed = toConfiguredId(options.id, config)
  const guess = closestMatch(options.id, candidates)
  const message = `\`${config.bin} ${typed}\` is not an ${config.bin} command`
  const suggestion = `${guess ? `did you mean \`${config.bin} ${toConfiguredId(guess, config)}\`? ` : ''}\`${config.bin} help\` lists every command`
  if (options.argv?.includes('--json')) {
    process.stdout.write(JSON.stringify({error: {code: 'unknown_command', message, suggestion}}, null, 2) + '\n')
  } else {
    process.stderr.write(`${paint.red('Error:', process.stderr)} ${message}\n${paint.dim('→', process.stderr)} ${suggestion}\n`)
  }
  this.exit(2)
}

export default hook
