import {execFileSync, spawn} from 'node:child_process'
import {chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {request} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

/**
 * A real Docker engine for tests. It uses one that already answers (OUTPOST_TEST_DOCKER_SOCKET, /var/run/docker.sock,
 * or the one an earlier test run started), else starts `dockerd` with its state in /tmp/outpost-test-dockerd and leaves
 * it running for the next run. Nothing can be pulled here, so the test image is made with `docker import` from a root
 * filesystem of Debian's busybox-static, with a banner service on port 22 that checks the contract's password.
 *
 * Needs (as root): `apt-get install -y docker.io busybox-static`.
 */

export const TEST_IMAGE = 'outpost-test/busybox:local'
const STATE_DIR = join(tmpdir(), 'outpost-test-dockerd')
const OWN_SOCKET = join(STATE_DIR, 'docker.sock')
const START_TIMEOUT_MS = 30_000

/** Greets with `<instance> ready`, reads one line, answers `welcome` when it is the password, else `denied`. */
const BANNER_SCRIPT = `#!/bin/sh
echo "\${OUTPOST_INSTANCE:-outpost} ready"
read -r line
line=$(printf '%s' "$line" | tr -d '\\r')
if [ -n "$OUTPOST_PASSWORD" ] && [ "$line" = "$OUTPOST_PASSWORD" ]; then echo welcome; else echo denied; fi
`
const BUSYBOX_APPLETS = ['sh', 'nc', 'tr', 'printf', 'echo', 'cat', 'sleep', 'true', 'false', 'httpd']

export type TestDocker = {available: true; socket: string; image: string} | {available: false; reason: string}

function ping(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const outgoing = request({socketPath: socket, path: '/_ping', timeout: 2000}, (incoming) => {
      incoming.resume()
      resolve(incoming.statusCode === 200)
    })
    outgoing.on('timeout', () => outgoing.destroy())
    outgoing.on('error', () => resolve(false))
    outgoing.end()
  })
}

function onPath(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
}

async function runningEngine(): Promise<string | undefined> {
  const candidates = [process.env.OUTPOST_TEST_DOCKER_SOCKET, '/var/run/docker.sock', OWN_SOCKET].filter((item): item is string => Boolean(item))
  for (const socket of candidates) if (existsSync(socket) && (await ping(socket))) return socket
  return undefined
}

async function startEngine(): Promise<string> {
  mkdirSync(STATE_DIR, {recursive: true})
  const logPath = join(STATE_DIR, 'dockerd.log')
  const log = openSync(logPath, 'a')
  // Its own session, so it outlives the test process and the next run reuses it.
  const child = spawn(
    'dockerd',
    ['--data-root', join(STATE_DIR, 'data'), '--host', `unix://${OWN_SOCKET}`, '--pidfile', join(STATE_DIR, 'docker.pid'), '--exec-root', join(STATE_DIR, 'exec')],
    {detached: true, stdio: ['ignore', log, log]},
  )
  closeSync(log)
  child.unref()
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (await ping(OWN_SOCKET)) return OWN_SOCKET
    await sleep(200)
  }
  const tail = readFileSync(logPath, 'utf8').trim().split('\n').slice(-5).join('\n')
  throw new Error(`dockerd did not answer on ${OWN_SOCKET} within ${START_TIMEOUT_MS / 1000} s:\n${tail}`)
}

function imagePresent(socket: string): boolean {
  try {
    execFileSync('docker', ['-H', `unix://${socket}`, 'image', 'inspect', TEST_IMAGE], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
}

/** busybox-static's binary and its applet links, plus the banner service, imported as TEST_IMAGE. */
function importImage(socket: string): void {
  const busybox = '/bin/busybox'
  const rootfs = mkdtempSync(join(tmpdir(), 'outpost-rootfs-'))
  try {
    mkdirSync(join(rootfs, 'bin'))
    execFileSync('cp', [busybox, join(rootfs, 'bin', 'busybox')])
    for (const applet of BUSYBOX_APPLETS) symlinkSync('busybox', join(rootfs, 'bin', applet))
    writeFileSync(join(rootfs, 'bin', 'banner'), BANNER_SCRIPT)
    chmodSync(join(rootfs, 'bin', 'banner'), 0o755)
    const archive = execFileSync('tar', ['-C', rootfs, '-c', '.'], {maxBuffer: 64 * 1024 * 1024})
    execFileSync(
      'docker',
      ['-H', `unix://${socket}`, 'import', '--change', 'ENV PATH=/bin', '--change', 'CMD ["/bin/nc", "-ll", "-p", "22", "-e", "/bin/banner"]', '-', TEST_IMAGE],
      {input: archive, stdio: ['pipe', 'ignore', 'pipe']},
    )
  } finally {
    rmSync(rootfs, {recursive: true, force: true})
  }
}

/** The image has no libc, so its busybox must be the static one, which the busybox-static package installs. */
function isStaticBusybox(): boolean {
  try {
    return execFileSync('dpkg-query', ['-S', '/bin/busybox'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).startsWith('busybox-static')
  } catch {
    return false
  }
}

/** A Docker engine with TEST_IMAGE on it, or why there can't be one here (the tests then skip with that reason). */
export async function testDocker(): Promise<TestDocker> {
  let socket = await runningEngine()
  if (!socket) {
    if (!onPath('dockerd')) return {available: false, reason: 'dockerd is not installed (apt-get install -y docker.io busybox-static)'}
    try {
      socket = await startEngine()
    } catch (error) {
      return {available: false, reason: error instanceof Error ? error.message : String(error)}
    }
  }
  if (!imagePresent(socket)) {
    if (!onPath('docker')) return {available: false, reason: 'the docker client is not installed (apt-get install -y docker.io)'}
    if (!isStaticBusybox()) return {available: false, reason: '/bin/busybox is not busybox-static (apt-get install -y busybox-static)'}
    try {
      importImage(socket)
    } catch (error) {
      if (!imagePresent(socket)) return {available: false, reason: `docker import of ${TEST_IMAGE} failed: ${error instanceof Error ? error.message : String(error)}`}
    }
  }
  return {available: true, socket, image: TEST_IMAGE}
}
