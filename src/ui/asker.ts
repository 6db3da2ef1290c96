/** The questions a wizard may ask a person; only made when there is a terminal (see canPrompt). */
export interface Asker {
  input(message: string, options?: {default?: string; validate?: (value: string) => string | true}): Promise<string>
  password(message: string): Promise<string>
  select(message: string, choices: readonly string[], preferred?: string): Promise<string>
  checkbox(message: string, choices: readonly string[], checked: readonly string[]): Promise<string[]>
  confirm(message: string, fallback: boolean): Promise<boolean>
}

/** Questions through @inquirer/prompts, imported on the first question only. */
export function inquirerAsker(): Asker {
  const prompts = () => import('@inquirer/prompts')
  return {
    async input(message, options = {}) {
      return (await prompts()).input({message, default: options.default, validate: options.validate})
    },
    async password(message) {
      return (await prompts()).password({message, mask: '*'})
    },
    async select(message, choices, preferred) {
      return (await prompts()).select({message, choices: choices.map((value) => ({value})), default: preferred})
    },
    async checkbox(message, choices, checked) {
      const chosen = await (await prompts()).checkbox({
        message,
        choices: choices.map((value) => ({value, checked: checked.includes(value)})),
        required: true,
      })
      return chosen
    },
    async confirm(message, fallback) {
      return (await prompts()).confirm({message, default: fallback})
    },
  }
}
