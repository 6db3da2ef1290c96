/**
 * Minimal ANSI colouring that honours NO_COLOR (https://no-color.org), FORCE_COLOR and a non-TTY stream,
 * without loading a colour library on every start.
 */
function enabled(stream: NodeJS.WriteStream): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false
  if (process.env.FORCE_COLOR !== undefined && process.env.FORCE_COLOR !== '0') return true
  return Boolean(stream.isTTY) && process.env.TERM !== 'dumb'
}

function style(open: number, close: number) {
  return (text: string, stream: NodeJS.WriteStream = process.stderr): string => (enabled(stream) ? `\u001B[${open}m${text}\u001B[${close}m` : text)
}

export const paint = {
  red: style(31, 39),
  green: style(32, 39),
  yellow: style(33, 39),
  dim: style(2, 22),
  bold: style(1, 22),
}
