/** One step of a long job: run() returns a short result shown beside its title. */
export interface Step {
  title: string
  run(): Promise<string | undefined>
}

export type ProgressMode = 'tasks' | 'lines' | 'silent'

/**
 * Runs steps in order: a listr2 task list in a terminal (loaded only then), plain lines otherwise (CI, pipes), and
 * nothing with --json, whose stdout is the JSON alone.
 */
export async function runSteps(steps: readonly Step[], mode: ProgressMode, log: (line: string) => void): Promise<void> {
  if (mode === 'tasks') {
    const {Listr} = await import('listr2')
    await new Listr(
      steps.map((step) => ({
        title: step.title,
        task: async (_context: unknown, task: {title: string}) => {
          const detail = await step.run()
          if (detail) task.title = `${step.title}: ${detail}`
        },
      })),
      {concurrent: false, exitOnError: true},
    ).run()
    return
  }
  for (const step of steps) {
    if (mode === 'lines') log(`${step.title}...`)
    const detail = await step.run()
    if (mode === 'lines' && detail) log(`  ${detail}`)
  }
}
