import {execFileSync} from 'node:child_process'
import {chownSync, existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {hostname, tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

/**
 * A real single-node SLURM cluster for tests: munged, slurmctld and slurmd with a minimal config whose state lives in
 * /tmp/outpost-test-slurm. A cluster that already answers there is reused (and left running for the next run).
 * The node declares 8 CPUs and 8000 MB whatever the machine has (SlurmdParameters=config_overrides), so the tests'
 * small jobs run side by side on a 2-core machine.
 *
 * Needs (as root): `apt-get install -y slurm-wlm munge`.
 */

const STATE_DIR = join(tmpdir(), 'outpost-test-slurm')
export const TEST_SLURM_CONF = join(STATE_DIR, 'slurm.conf')
const START_TIMEOUT_MS = 30_000

export type TestSlurm = {available: true; slurmConf: string; node: string} | {available: false; reason: string}

function config(node: string): string {
  return `ClusterName=outpost
SlurmctldHost=${node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=${STATE_DIR}/state
SlurmdSpoolDir=${STATE_DIR}/spool
SlurmctldPidFile=${STATE_DIR}/slurmctld.pid
SlurmdPidFile=${STATE_DIR}/slurmd.pid
SlurmctldLogFile=${STATE_DIR}/slurmctld.log
SlurmdLogFile=${STATE_DIR}/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=${STATE_DIR}/jobcomp.log
NodeName=${node} CPUs=8 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
`
}

function run(program: string, args: string[]): string {
  return execFileSync(program, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, SLURM_CONF: TEST_SLURM_CONF}, timeout: 15_000})
}

function succeeds(program: string, args: string[]): boolean {
  try {
    run(program, args)
    return true
  } catch {
    return false
  }
}

function installed(): string | undefined {
  for (const program of ['/usr/sbin/munged', '/usr/sbin/slurmctld', '/usr/sbin/slurmd', '/usr/bin/sbatch']) {
    if (!existsSync(program)) return `${program} is missing (apt-get install -y slurm-wlm munge)`
  }
  return undefined
}

function ensureMunge(): void {
  if (succeeds('munge', ['-n'])) return
  mkdirSync('/run/munge', {recursive: true})
  execFileSync('chown', ['munge:munge', '/run/munge'])
  execFileSync('runuser', ['-u', 'munge', '--', '/usr/sbin/munged'], {stdio: 'ignore'})
}

/** The node is up when sinfo shows it in a state that takes jobs. */
function nodeReady(node: string): boolean {
  try {
    const state = run('sinfo', ['--Node', '--noheader', '--nodes', node, '--format=%t']).trim()
    return /^(idle|mix|alloc)/.test(state)
  } catch {
    return false
  }
}

async function stopDaemons(): Promise<void> {
  for (const pidFile of ['slurmd.pid', 'slurmctld.pid']) {
    const path = join(STATE_DIR, pidFile)
    const pid = existsSync(path) ? Number(readFileSync(path, 'utf8').trim()) : NaN
    if (!Number.isInteger(pid) || pid <= 1) continue
    try {
      process.kill(pid, 'SIGTERM')
    } catch {
      continue
    }
    for (let waited = 0; waited < 50 && isAlive(pid); waited++) await sleep(100)
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** A running single-node SLURM, or why there can't be one here (the tests then skip with that reason). */
export async function testSlurm(): Promise<TestSlurm> {
  const missing = installed()
  if (missing) return {available: false, reason: missing}
  const node = hostname().split('.')[0] ?? 'localhost'
  try {
    ensureMunge()
    mkdirSync(join(STATE_DIR, 'state'), {recursive: true})
    mkdirSync(join(STATE_DIR, 'spool'), {recursive: true})
    const wanted = config(node)
    const current = existsSync(TEST_SLURM_CONF) ? readFileSync(TEST_SLURM_CONF, 'utf8') : ''
    if (current !== wanted) {
      // Daemons of another config would keep it: stop them first.
      await stopDaemons()
      writeFileSync(TEST_SLURM_CONF, wanted)
    }
    if (!succeeds('scontrol', ['ping'])) {
      // Each daemonizes itself; one that is already running refuses to start twice, which is fine.
      succeeds('/usr/sbin/slurmctld', ['-f', TEST_SLURM_CONF])
      succeeds('/usr/sbin/slurmd', ['-f', TEST_SLURM_CONF])
    } else if (!nodeReady(node)) {
      succeeds('/usr/sbin/slurmd', ['-f', TEST_SLURM_CONF])
    }
    const deadline = Date.now() + START_TIMEOUT_MS
    while (!nodeReady(node)) {
      if (Date.now() > deadline) {
        const log = existsSync(join(STATE_DIR, 'slurmctld.log')) ? readFileSync(join(STATE_DIR, 'slurmctld.log'), 'utf8').trim().split('\n').slice(-5).join('\n') : ''
        return {available: false, reason: `the SLURM node ${node} did not come up within ${START_TIMEOUT_MS / 1000} s\n${log}`}
      }
      await sleep(250)
    }
  } catch (error) {
    return {available: false, reason: `SLURM could not start: ${error instanceof Error ? error.message : String(error)}`}
  }
  return {available: true, slurmConf: TEST_SLURM_CONF, node}
}

/** The unprivileged user the tests' jobs run as ([provisioner.slurm] run_as), and its home, where job output goes. */
export const TEST_JOB_USER = 'outpost-test-jobs'
const JOB_USER_HOME = join(STATE_DIR, 'jobs-home')

function uidOf(user: string): number | undefined {
  try {
    return Number(execFileSync('id', ['-u', user], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim())
  } catch {
    return undefined
  }
}

/** Makes TEST_JOB_USER when it is missing (we run as root), with its home; another test run may be making it too. */
export function testJobUser(): {name: string; uid: number; home: string} {
  if (uidOf(TEST_JOB_USER) === undefined) {
    try {
      execFileSync('useradd', ['--system', '--user-group', '--home-dir', JOB_USER_HOME, '--shell', '/usr/sbin/nologin', TEST_JOB_USER], {stdio: 'ignore'})
    } catch (error) {
      if (uidOf(TEST_JOB_USER) === undefined) throw error
    }
  }
  const uid = uidOf(TEST_JOB_USER) ?? -1
  const gid = Number(execFileSync('id', ['-g', TEST_JOB_USER], {encoding: 'utf8'}).trim())
  mkdirSync(JOB_USER_HOME, {recursive: true, mode: 0o700})
  chownSync(JOB_USER_HOME, uid, gid)
  return {name: TEST_JOB_USER, uid, home: JOB_USER_HOME}
}
