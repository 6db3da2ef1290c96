import {accessSync, constants} from 'node:fs'
import {delimiter, join} from 'node:path'

/**
 * Whether a Docker engine on this host can give containers GPUs. The engine serves a `DeviceRequests` entry with
 * capabilities [["gpu"]] only when it finds the NVIDIA Container Toolkit's `nvidia-container-runtime-hook` on its
 * PATH (moby's daemon/nvidia_linux.go; Docker's "Resource constraints: GPU" guide); without it every GPU container
 * fails to start with `could not select device driver "" with capabilities: [[gpu]]`, the most common failure of
 * GPU provider guides. `nvidia-ctk runtime configure --runtime=docker` also registers the `nvidia` runtime, which
 * the engine lists in /info.
 */

export const NVIDIA_HOOK = 'nvidia-container-runtime-hook'
/** Where the toolkit's packages install it, besides the PATH: dockerd's PATH is often not the agent's. */
const HOOK_DIRECTORIES = ['/usr/bin', '/usr/local/bin', '/usr/sbin', '/usr/local/sbin']

export const CONTAINER_RUNTIME_REMEDY =
  'install the NVIDIA Container Toolkit (apt-get install nvidia-container-toolkit), run `nvidia-ctk runtime configure --runtime=docker`, then restart the engine (systemctl restart docker)'

export interface RuntimeCheck {
  ok: boolean
  message: string
  remedy?: string
}

/** Finds the hook on the PATH or where the toolkit installs it. */
export function findNvidiaHook(path = process.env.PATH ?? ''): string | undefined {
  const directories = [...path.split(delimiter).filter(Boolean), ...HOOK_DIRECTORIES]
  for (const directory of directories) {
    const candidate = join(directory, NVIDIA_HOOK)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      continue
    }
  }
  return undefined
}

/** The check from the engine's /info runtimes and the hook's presence on this host. */
export function checkContainerRuntime(runtimes: readonly string[], hook: string | undefined): RuntimeCheck {
  const runtime = runtimes.includes('nvidia') ? '; the nvidia runtime is registered' : ''
  if (hook) return {ok: true, message: `GPU containers can start: ${hook} is installed${runtime}`}
  return {
    ok: false,
    message: `GPU containers would fail with \`could not select device driver "" with capabilities: [[gpu]]\`: ${NVIDIA_HOOK} is not installed${runtime}`,
    remedy: CONTAINER_RUNTIME_REMEDY,
  }
}
