import type {ProgressMode} from './tasks.js'

/**
 * A single long step outside a task list: an ora spinner for a person at a terminal (ora is loaded only then), the
 * text as one line in CI logs and pipes, nothing with --json.
 */
export async function whileWorking<T>(text: string, mode: ProgressMode, log: (line: string) => void, work: () => Promise<T>): Promise<T> {
  if (mode !== 'tasks') {
    if (mode === 'lines') log(text)
    return work()
  }
  const {default: ora} = await import('ora')
  const spinner = ora({text, stream: process.stdout}).start()
  try {
    const value = await work()
    spinner.succeed()
    return value
  } catch (error) {
    spinner.fail()
    throw error
  }
}
