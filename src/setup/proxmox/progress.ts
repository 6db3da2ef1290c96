/** One step of the wizard's work; its answer, if any, is shown after its title when it is done. */
export interface Step {
  title: string
  run: () => Promise<string | undefined>
}

/** tty: a listr2 task list; plain: a line as each step starts and ends (CI logs); silent: nothing (--json). */
export type ProgressMode = 'tty' | 'plain' | 'silent'

export async function runSteps(steps: readonly Step[], mode: ProgressMode, log: (line: string) => void): Promise<void> {
  if (mode === 'tty') {
    // listr2 is loaded only for a person at a terminal.
    const {Listr} = await import('listr2')
    const list = new Listr(
      steps.map((step) => ({
        title: step.title,
        task: async (_context: unknown, task: {title: string}) => {
          const note = await step.run()
          if (note) task.title = `${step.title}: ${note}`
        },
      })),
      {concurrent: false, exitOnError: true, rendererOptions: {collapseErrors: false}},
    )
    await list.run()
    return
  }
  for (const step of steps) {
    if (mode === 'plain') log(`- ${step.title} ...`)
    const note = await step.run()
    if (mode === 'plain') log(`✓ ${step.title}${note ? `: ${note}` : ''}`)
  }
}
