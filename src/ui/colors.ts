import {Chalk, supportsColor, supportsColorStderr, type ChalkInstance} from 'chalk'

/**
 * Colour through chalk, which honours FORCE_COLOR, TERM=dumb and whether the stream is a terminal. NO_COLOR
 * (https://no-color.org) it leaves to its users, so it is checked here first.
 */
function chalkFor(support: typeof supportsColor): ChalkInstance {
  const noColor = process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== ''
  return new Chalk({level: noColor || !support ? 0 : support.level})
}

const stdoutChalk = chalkFor(supportsColor)
const stderrChalk = chalkFor(supportsColorStderr)

function style(name: 'red' | 'green' | 'yellow' | 'dim' | 'bold') {
  return (text: string, stream: NodeJS.WriteStream = process.stderr): string => (stream === process.stdout ? stdoutChalk : stderrChalk)[name](text)
}

export const paint = {
  red: style('red'),
  green: style('green'),
  yellow: style('yellow'),
  dim: style('dim'),
  bold: style('bold'),
}
