import {rmSync} from 'node:fs'
import {join} from 'node:path'

import {writeFileAtomic} from '../core/files.js'

/**
 * `<state_dir>/probe-url`: where the running agent serves /metrics, /healthz and /readyz. `[metrics] listen` may name
 * port 0 (any free port), so `outpost status` reads the address the agent actually got from here.
 */
export const PROBE_URL_FILE = 'probe-url'

/** Writes the file (best effort: status falls back to `[metrics] listen`) and returns what removes it. */
export function recordProbeUrl(stateDir: string, url: string): () => void {
  const path = join(stateDir, PROBE_URL_FILE)
  try {
    writeFileAtomic(path, url + '\n', 0o600)
  } catch {
    return () => undefined
  }
  return () => rmSync(path, {force: true})
}
