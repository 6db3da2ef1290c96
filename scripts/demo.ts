/**
 * `npm run demo`: the whole provider story on one machine, with the built CLI as a user runs it. A devnet marketplace
 * on a free port (the renter commands find it by the record it leaves), a provider initialised (its main key
 * encrypted) and registered, the agent running the local provisioner, a renter renting a machine, its decrypted
 * credentials and how to connect, a TCP connection to it, the cancellation, and everything cleaned up.
 * `npm run demo -- --provisioner docker` runs the machine as a container on a Docker engine instead (one that runs,
 * or a dockerd the demo starts), from a busybox image with the same banner service.
 * `npm run demo -- --jobs` tells the job-market story instead (PROTOCOL §12): the provider stakes, the agent serves
 * zk_proof and quantum_circuit jobs, a renter submits a zk proof job and a quantum job, and each is leased, proved or
 * simulated, verified by the devnet and paid.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {createConnection} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {fileURLToPath} from 'node:url'
import ora from 'ora'
import {z} from 'zod'
import {paint} from '../src/ui/colors.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'bin', 'run.js')
const work = mkdtempSync(join(tmpdir(), 'outpost-demo-'))
const configDir = join(work, 'config')
const devnetDir = join(work, 'devnet')
// The main key is encrypted (init's default); in a terminal init would ask for this passphrase.
const env = {...process.env, OUTPOST_CONFIG_DIR: configDir, OUTPOST_KEY_PASSPHRASE: 'demo passphrase', NO_COLOR: '1', CI: 'true'}
const children: ChildProcess[] = []

const jobsDemo = process.argv.includes('--jobs')
const provisionerFlag = process.argv.indexOf('--provisioner')
const provisionerType = provisionerFlag === -1 ? 'local' : (process.argv[provisionerFlag + 1] ?? '')
if (!['local', 'docker'].includes(provisionerType)) {
  console.error(`demo: --provisioner must be local or docker, not "${provisionerType}"`)
  process.exit(2)
}

/** The agent's environment for the chosen backend: docker gets an engine and its image from the test helper. */
async function provisionerEnv(): Promise<Record<string, string>> {
  if (provisionerType !== 'docker') return {}
  const {testDocker} = await import('../test/helpers/dockerd.js')
  const docker = await testDocker()
  if (!docker.available) throw new Error(`--provisioner docker: ${docker.reason}`)
  return {
    OUTPOST_PROVISIONER_TYPE: 'docker',
    OUTPOST_PROVISIONER_DOCKER_SOCKET: docker.socket,
    OUTPOST_PROVISIONER_DOCKER_IMAGE: docker.image,
    OUTPOST_PROVISIONER_DOCKER_BIND_ADDRESS: '127.0.0.1',
    OUTPOST_PROVISIONER_DOCKER_STOP_TIMEOUT_SECONDS: '1',
  }
}

/** The renter's SSH public key (a well-formed one; nothing logs in with it on the local backend). */
const DEMO_SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVnhlMas7YyM1M0V1GV+JZL30egIhRBlaFjDuz1uUz4 demo@renter'

const step = (text: string) => console.log(`\n${paint.bold(`▸ ${text}`, process.stdout)}`)
const show = (text: string) => console.log(`  ${text}`)

/** Runs `outpost <args>` to completion; with --json its output is parsed by `schema`. */
function outpost<T>(args: string[], schema: z.ZodType<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args, '--json'], {env, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`outpost ${args.join(' ')} exited ${code}:\n${stdout}${stderr}`))
      try {
        resolve(schema.parse(JSON.parse(stdout)))
      } catch (error) {
        reject(new Error(`outpost ${args.join(' ')}: unexpected output ${stdout}`, {cause: error}))
      }
    })
  })
}

/** Starts a long-running `outpost` process; its lines go through `onLine`. */
function background(args: string[], onLine: (line: string) => void, extraEnv: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], {env: {...env, ...extraEnv}, stdio: ['ignore', 'pipe', 'pipe']})
  children.push(child)
  for (const stream of [child.stdout, child.stderr]) if (stream) createInterface({input: stream}).on('line', onLine)
  return child
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)))
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** A wait the demo can't fill with output of its own: a spinner in a terminal, a line before and after otherwise. */
async function waitingFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  // A one-space prefix indents the spinner's lines like the demo's others; its symbols are coloured like them too.
  const spinner = ora({text: `waiting for ${what}`, stream: process.stdout, prefixText: ' '}).start()
  try {
    const value = await until(what, timeoutMs, probe)
    spinner.stopAndPersist({symbol: paint.green('✓', process.stdout)})
    return value
  } catch (error) {
    spinner.stopAndPersist({symbol: paint.red('✗', process.stdout)})
    throw error
  }
}

/** Connects like a renter's client: reads the banner, sends the password, reads the answer. */
function connect(port: number, password: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({host: '127.0.0.1', port})
    const lines: string[] = []
    createInterface({input: socket}).on('line', (line) => {
      lines.push(line)
      if (lines.length === 1) socket.write(password + '\n')
    })
    socket.on('close', () => resolve(lines))
    socket.on('error', reject)
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer from the instance')))
  })
}

const Listening = z.object({endpoint: z.string(), recorded_in: z.array(z.string())})
const Initialised = z.object({main_key: z.object({file: z.string(), encrypted: z.boolean()}), offerings: z.array(z.object({name: z.string(), cpu_cores: z.number(), memory_mb: z.number()}))})
const Registered = z.object({offerings: z.array(z.object({name: z.string(), offering_id: z.string().optional()}))})
const Instance = z.object({external_id: z.string(), ip_address: z.string(), ssh_port: z.number()})
const Connect = z.object({protocol: z.string(), command: z.string(), note: z.string()})
const ContractView = z.object({contract_id: z.string(), status: z.string(), instance: Instance.nullish(), credentials: z.unknown().optional(), connect: Connect.optional()})
const Credentials = z.object({username: z.string(), password: z.string()})
const Staked = z.object({amount: z.string(), stake: z.object({staked: z.string()})})
const StakeView = z.object({staked: z.string(), rewards_pending: z.string()})
const JobView = z.object({
  job_id: z.string(),
  kind: z.string(),
  status: z.string(),
  program: z.object({digest: z.string()}),
  reward: z.object({amount: z.string().optional()}),
  collateral: z.string(),
  verdict: z.object({verdict: z.string(), reason: z.string().optional(), reward: z.string().optional()}).nullish(),
  result: z.object({signer: z.string(), output: z.object({digest: z.string(), size_bytes: z.number()}), started_at: z.number(), finished_at: z.number()}).nullish(),
  output_file: z.string().optional(),
})

/** The agent's log lines about one job, as the demo shows them. */
const JOB_LOG = /job leased|running the job|the job ran|result accepted|result rejected|job declined|lease failed|lease expired/

/** `--jobs`: a zk proof job and a quantum job, from the renter's submission to the provider's reward. */
async function jobsStory(started: number, mainKeyFile: string): Promise<void> {
  step('outpost stake deposit 100: leasing a job locks its collateral out of the stake (§12)')
  const staked = await outpost(['stake', 'deposit', '100', '--main-key-file', mainKeyFile], Staked)
  show(`staked ${staked.amount}: ${staked.stake.staked} in all`)

  step('outpost run with [jobs] enabled: the heartbeat offers job:zk_proof and job:quantum_circuit; snarkjs and the qasm simulator run them')
  const agent = background(['run'], (line) => (JOB_LOG.test(line) ? show(`[agent] ${line}`) : undefined), {
    OUTPOST_LOGGING_FORMAT: 'pretty',
    OUTPOST_METRICS_LISTEN: '127.0.0.1:0',
    OUTPOST_JOBS_ENABLED: 'true',
    OUTPOST_JOBS_KINDS: '["zk_proof","quantum_circuit"]',
    OUTPOST_JOBS_MAX_CONCURRENT: '2',
  })

  step('A renter submits a zk proof job: outpost devnet job create --example multiplier (a circom circuit, Groth16)')
  const proof = await outpost(['devnet', 'job', 'create', '--example', 'multiplier', '--reward', '1.5', '--collateral', '2'], JobView)
  show(`job ${proof.job_id}: ${proof.kind}, program ${proof.program.digest.slice(0, 16)}…, reward ${proof.reward.amount}, collateral ${proof.collateral}`)
  step('A renter submits a quantum job: outpost devnet job create --example ghz (a 5-qubit GHZ circuit, 1024 shots)')
  const circuit = await outpost(['devnet', 'job', 'create', '--example', 'ghz', '--shots', '1024', '--reward', '0.8', '--collateral', '1'], JobView)
  show(`job ${circuit.job_id}: ${circuit.kind}, reward ${circuit.reward.amount}, collateral ${circuit.collateral}`)

  for (const job of [proof, circuit]) {
    const settled = await waitingFor(`the ${job.kind} job to be leased, run, verified and paid`, 120_000, async () => {
      const view = await outpost(['devnet', 'job', 'show', job.job_id], JobView)
      return view.status === 'completed' || view.status === 'failed' ? view : undefined
    })
    const outputFile = join(work, `${job.job_id}.out`)
    const shown = await outpost(['devnet', 'job', 'show', job.job_id, '--output', outputFile], JobView)
    step(`outpost devnet job show ${job.job_id} --output FILE: the ${job.kind} result as the renter reads it`)
    show(`status ${settled.status}; verdict ${settled.verdict?.verdict ?? 'none'}${settled.verdict?.reward ? `, ${settled.verdict.reward} paid` : ''}${settled.verdict?.reason ? ` (${settled.verdict.reason})` : ''}`)
    if (shown.result) {
      show(`signed by the agent key ${shown.result.signer.slice(0, 16)}…; output ${shown.result.output.size_bytes} bytes, sha256 ${shown.result.output.digest.slice(0, 16)}…; ran ${shown.result.finished_at - shown.result.started_at} ms`)
    }
    const output = readFileSync(outputFile, 'utf8')
    show(`output: ${output.length > 240 ? `${output.slice(0, 240)}…` : output}`)
    if (settled.verdict?.verdict !== 'accepted') throw new Error(`the ${job.kind} job was not accepted: ${JSON.stringify(settled.verdict)}`)
  }

  step('outpost stake info: the rewards of the accepted results wait to be claimed, the collateral is back')
  const stake = await outpost(['stake', 'info'], StakeView)
  show(`staked ${stake.staked}; rewards pending ${stake.rewards_pending}`)

  step('Cleaning up')
  agent.kill('SIGTERM')
  const agentExit = await exited(agent)
  if (agentExit !== 0) throw new Error(`the agent exited ${agentExit} on SIGTERM`)
  show(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

async function main(): Promise<void> {
  const started = Date.now()
  step('Starting a devnet marketplace on a free port')
  const devnetLines: string[] = []
  const devnet = background(['devnet', 'start', '--port', '0', '--json', '--data-dir', devnetDir], (line) => devnetLines.push(line))
  const listening = await until('the devnet to listen', 15_000, async () => {
    const line = devnetLines.find((text) => text.startsWith('{'))
    return line ? Listening.parse(JSON.parse(line)) : undefined
  })
  const {endpoint} = listening
  show(`devnet at ${endpoint}; recorded in ${listening.recorded_in.join(' and ')}, where the renter commands look`)

  step('outpost init --main-key: agent key, encrypted provider main key, and outpost.toml with [provider] and an offering')
  const initialised = await outpost(['init', '--main-key', '--endpoint', endpoint, '--name', 'Demo Compute', '--contact-email', 'demo@example.com', '--offerings', 'small'], Initialised)
  const small = initialised.offerings[0]
  if (!small) throw new Error('init wrote no offering')
  show(`config in ${configDir}; main key ${initialised.main_key.encrypted ? 'encrypted' : 'in plain text'}`)
  show(`offering ${small.name}: ${small.cpu_cores} vCPU, ${small.memory_mb} MiB, sized from this host`)

  step('outpost register: the provider, the agent delegation and the offering')
  const registered = await outpost(['register', '--main-key-file', initialised.main_key.file], Registered)
  const offeringId = registered.offerings.find((offering) => offering.name === small.name)?.offering_id
  if (!offeringId) throw new Error('register published no offering')
  show(`offering ${small.name}: ${offeringId}`)

  if (jobsDemo) {
    try {
      await jobsStory(started, initialised.main_key.file)
    } finally {
      devnet.kill('SIGTERM')
      await exited(devnet)
    }
    return
  }

  step(`outpost run: the agent, with the ${provisionerType} provisioner`)
  const agent = background(['run'], (line) => show(`[agent] ${line}`), {
    ...(await provisionerEnv()),
    OUTPOST_LOGGING_FORMAT: 'pretty',
    OUTPOST_METRICS_LISTEN: '127.0.0.1:0',
    OUTPOST_AGENT_ACTIVE_SYNC_SECONDS: '1',
  })

  step('A renter rents a machine: outpost devnet contract create (on the devnet it recorded: no --endpoint needed)')
  const created = await outpost(['devnet', 'contract', 'create', '--offering', offeringId, '--ssh-pubkey', DEMO_SSH_KEY], ContractView)
  const id = created.contract_id
  show(`contract ${id}: ${created.status}`)

  const provisioned = await waitingFor('the agent to provision the machine', 30_000, async () => {
    const contract = await outpost(['devnet', 'contract', 'show', id], ContractView)
    return ['provisioned', 'active'].includes(contract.status) ? contract : undefined
  })
  show(`provisioned in ${((Date.now() - started) / 1000).toFixed(1)} s since the demo began`)

  step('outpost devnet contract show --decrypt: the instance and the credentials only the renter can open')
  const opened = await outpost(['devnet', 'contract', 'show', id, '--decrypt'], ContractView)
  const instance = Instance.parse(opened.instance ?? provisioned.instance)
  const credentials = Credentials.parse(opened.credentials)
  show(`instance ${instance.external_id} at ${instance.ip_address}:${instance.ssh_port}`)
  show(`credentials ${JSON.stringify(credentials)}`)
  if (opened.connect) show(`connect: ${opened.connect.command}  (${opened.connect.note})`)

  step(`Connecting to ${instance.ip_address}:${instance.ssh_port}: the demo's machine runs a banner service, not SSH, so as nc would`)
  const answer = await connect(instance.ssh_port, credentials.password)
  for (const line of answer) show(`< ${line}`)
  if (answer[1] !== 'welcome') throw new Error(`the instance did not accept the credentials: ${answer.join(' | ')}`)

  step('The renter cancels: outpost devnet contract cancel')
  await outpost(['devnet', 'contract', 'cancel', id], ContractView)
  const ended = await waitingFor('the agent to terminate the machine', 30_000, async () => {
    const contract = await outpost(['devnet', 'contract', 'show', id], ContractView)
    return contract.status === 'terminated' ? contract : undefined
  })
  show(`contract ${id}: ${ended.status}`)

  step('Cleaning up')
  agent.kill('SIGTERM')
  const agentExit = await exited(agent)
  devnet.kill('SIGTERM')
  await exited(devnet)
  if (agentExit !== 0) throw new Error(`the agent exited ${agentExit} on SIGTERM`)
  show(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

let failed = false
try {
  await main()
} catch (error) {
  failed = true
  console.error(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}`)
} finally {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  rmSync(work, {recursive: true, force: true})
}
process.exit(failed ? 1 : 0)
