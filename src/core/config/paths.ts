import {homedir} from 'node:os'
import {dirname, isAbsolute, join, resolve} from 'node:path'

export const CONFIG_FILE_NAME = 'outpost.toml'

/** The config directory: OUTPOST_CONFIG_DIR, else the directory oclif chose (~/.config/outpost). */
export function configDir(oclifConfigDir: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.OUTPOST_CONFIG_DIR
  if (fromEnv) return resolve(fromEnv)
  return oclifConfigDir ?? join(homedir(), '.config', 'outpost')
}

/** The config file: --config, else OUTPOST_CONFIG, else outpost.toml in the config directory. */
export function configFilePath(flag: string | undefined, dir: string, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = flag ?? env.OUTPOST_CONFIG
  return chosen ? resolve(chosen) : join(dir, CONFIG_FILE_NAME)
}

/** Relative paths in a config file are relative to the file's own directory, not to the working directory. */
export function resolveFrom(configFile: string, path: string): string {
  const expanded = path.startsWith('~/') ? join(homedir(), path.slice(2)) : path
  return isAbsolute(expanded) ? expanded : resolve(dirname(configFile), expanded)
}
