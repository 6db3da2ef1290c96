import {execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

/**
 * A "Proxmox host" for the wizard's end-to-end tests: a real OpenSSH server on 127.0.0.1 (a free port) whose user's
 * PATH starts with the fake Proxmox tools of test/fixtures/fake-pve, which keep their state in a temp directory.
 */

export const SSHD = '/usr/sbin/sshd'
const FAKE_TOOLS = fileURLToPath(new URL('../../fixtures/fake-pve/', import.meta.url))

export interface FakePveSettings {
  node?: string
  version?: string
  tokenSecret: string
  bridges?: string[]
  /** The qm command (without its VMID) that fails, with the message real qm prints. */
  failOn?: {command: string; message: string; exit?: number}
  failDownload?: boolean
  /** PCI devices, as `pvesh get /nodes/<node>/hardware/pci` lists them, with the driver lspci reports. */
  pci?: FakePciDevice[]
}

export interface FakePciDevice {
  id: string
  class: string
  class_name: string
  vendor: string
  device: string
  subsystem_vendor?: string
  subsystem_device?: string
  iommugroup: number
  vendor_name: string
  device_name: string
  driver?: string
}

export interface FakePveState {
  vms: Record<string, {config: Record<string, string | number>}>
  roles: Record<string, string>
  users: string[]
  acls: {path: string; roleid: string; type: string; ugid: string; propagate: number}[]
  tokens: Record<string, string[]>
  mappings?: Record<string, {id: string; map: string[]; description?: string}>
  pools: Record<string, {comment: string; vms: number[]; storage: string[]}>
}

export interface FakeProxmoxHost {
  port: number
  /** The user's private key (openssh-key-v1, as ssh-keygen writes it). */
  userKey: string
  /** `SHA256:...` as ssh-keygen -lf prints it. */
  hostKeyFingerprint: string
  /** Where the fake tools keep their state, and the wizard's images and snippets go. */
  stateDir: string
  imageDir: string
  configure(settings: FakePveSettings): void
  /** Forgets every VM, role, user, token, pool and call. */
  reset(): void
  state(): FakePveState
  calls(): string[]
  stop(): Promise<void>
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

function waitListening(sshd: ChildProcess, log: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd did not start:\n${log()}`)), 10_000)
    sshd.stderr?.on('data', () => {
      if (/Server listening/.test(log())) {
        clearTimeout(timer)
        resolve()
      }
    })
    sshd.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`sshd exited with ${code}:\n${log()}`))
    })
  })
}

/** Starts sshd with the fake tools; `certificate` is the PEM the API serves (the fake openssl reads it for /etc/pve/local). */
export async function startFakeProxmoxHost(certificate: string): Promise<FakeProxmoxHost> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-fake-pve-'))
  const stateDir = join(dir, 'state')
  const imageDir = join(dir, 'images')
  mkdirSync(stateDir)
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'hostkey')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'outpost-test', '-f', join(dir, 'userkey')])
  const hostKeyFingerprint = /SHA256:\S+/.exec(execFileSync('ssh-keygen', ['-lf', join(dir, 'hostkey.pub')], {encoding: 'utf8'}))?.[0] ?? ''
  // The session's PATH puts the fake tools first; sshd applies it because of PermitUserEnvironment. HOME is a bare
  // directory: bash sources ~/.bashrc for every command sshd runs, and this machine's root .bashrc (pyenv init) took
  // half a second each time, where a Proxmox host's root has a plain one.
  const home = join(dir, 'home')
  mkdirSync(home)
  const environment = `environment="PATH=${FAKE_TOOLS}:/usr/local/bin:/usr/bin:/bin",environment="FAKE_PVE_STATE=${stateDir}",environment="HOME=${home}"`
  writeFileSync(join(dir, 'authorized_keys'), `${environment} ${readFileSync(join(dir, 'userkey.pub'), 'utf8')}`, {mode: 0o600})
  writeFileSync(join(stateDir, 'pve-ssl.pem'), certificate)
  mkdirSync('/run/sshd', {recursive: true})

  const port = await freePort()
  const sshd = spawn(
    SSHD,
    [
      '-D', '-e', '-f', '/dev/null', '-h', join(dir, 'hostkey'), '-p', String(port),
      '-o', 'ListenAddress=127.0.0.1', '-o', `AuthorizedKeysFile=${join(dir, 'authorized_keys')}`, '-o', 'StrictModes=no',
      '-o', 'PermitUserEnvironment=yes', '-o', `PidFile=${join(dir, 'sshd.pid')}`,
      // Passwords are accepted as a method, so a wrong one is refused by the check itself (root's is locked here).
      '-o', 'PasswordAuthentication=yes', '-o', 'PermitRootLogin=yes',
    ],
    {stdio: ['ignore', 'ignore', 'pipe']},
  )
  let log = ''
  sshd.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString('utf8')))
  await waitListening(sshd, () => log)

  const statePath = join(stateDir, 'state.json')
  const callsPath = join(stateDir, 'calls.log')
  return {
    port,
    userKey: join(dir, 'userkey'),
    hostKeyFingerprint,
    stateDir,
    imageDir,
    configure(settings) {
      writeFileSync(join(stateDir, 'settings.json'), JSON.stringify(settings))
    },
    reset() {
      rmSync(statePath, {force: true})
      rmSync(callsPath, {force: true})
      rmSync(imageDir, {recursive: true, force: true})
      rmSync(join(stateDir, 'snippets'), {recursive: true, force: true})
    },
    state() {
      return existsSync(statePath) ? (JSON.parse(readFileSync(statePath, 'utf8')) as FakePveState) : {vms: {}, roles: {}, users: [], acls: [], tokens: {}, pools: {}}
    },
    calls() {
      return existsSync(callsPath) ? readFileSync(callsPath, 'utf8').split('\n').filter(Boolean) : []
    },
    async stop() {
      if (sshd.exitCode === null) {
        const exited = new Promise((resolve) => sshd.once('exit', resolve))
        sshd.kill('SIGTERM')
        await exited
      }
      rmSync(dir, {recursive: true, force: true})
    },
  }
}
