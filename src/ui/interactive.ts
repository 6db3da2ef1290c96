/** True when a person can answer a prompt: a TTY on both ends, not CI, and not --yes. */
export function canPrompt(options: {yes?: boolean} = {}): boolean {
  if (options.yes) return false
  if (process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0') return false
  return Boolean(process.stdin.isTTY && process.stdout.isTTY)
}
