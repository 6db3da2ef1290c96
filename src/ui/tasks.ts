import {canPrompt} from './interactive.js'

/** What a task did, in a few words shown beside its title, and what it adds to the context the next tasks see. */
export interface TaskDone<C> {
  note?: string
  add?: Partial<C>
}

/** One step of a long job: it runs with what the tasks before it found, and returns what it found. */
export interface Task<C> {
  title: string
  run(context: Readonly<C>): Promise<TaskDone<C>>
}

/** tasks: a listr2 task list (a terminal); lines: a line per task and its note (CI logs, pipes); silent: nothing (--json). */
export type ProgressMode = 'tasks' | 'lines' | 'silent'

/** The progress a command shows: none with --json, whose stdout is the JSON alone; a task list only for a person. */
export function progressMode(json: boolean): ProgressMode {
  if (json) return 'silent'
  return canPrompt() ? 'tasks' : 'lines'
}

/** Runs the tasks in order, each one's results added to the context; resolves with the context after the last. */
export async function runTasks<C>(tasks: readonly Task<C>[], start: C, mode: ProgressMode, log: (line: string) => void): Promise<C> {
  let context = start
  const runOne = async (task: Task<C>): Promise<string | undefined> => {
    const done = await task.run(context)
    context = {...context, ...done.add}
    return done.note
  }
  if (mode === 'tasks') {
    // listr2 is loaded only for a person at a terminal.
    const {Listr} = await import('listr2')
    const list = new Listr(
      tasks.map((task) => ({
        title: task.title,
        task: async (_listrContext: unknown, shown: {title: string}) => {
          const note = await runOne(task)
          if (note) shown.title = `${task.title}: ${note}`
        },
      })),
      {concurrent: false, exitOnError: true, rendererOptions: {collapseErrors: false}},
    )
    await list.run()
    return context
  }
  for (const task of tasks) {
    if (mode === 'lines') log(`${task.title}...`)
    const note = await runOne(task)
    if (mode === 'lines' && note) log(`  ${note}`)
  }
  return context
}
