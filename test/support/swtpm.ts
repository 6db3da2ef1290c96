import {execFile, execFileSync, spawn, type ChildProcess} from 'node:child_process'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {connect, createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {promisify} from 'node:util'

const run = promisify(execFile)

/**
 * A software TPM (swtpm) and tpm2-tools for tests, as MACHINE-NOTES.md "Software TPM" describes: `swtpm socket` with
 * `not-need-init,startup-clear` on two TCP ports (the swtpm TCTI uses port and port+1), `tpm2_flushcontext -t` after
 * every command (there is no resource manager). Needs `apt-get install -y swtpm swtpm-tools tpm2-tools
 * libtss2-tcti-swtpm0`.
 */

const TOOLS = ['swtpm', 'swtpm_setup', 'tpm2_getcap', 'tpm2_readpublic', 'tpm2_evictcontrol', 'tpm2_nvread', 'tpm2_createek', 'tpm2_createak', 'tpm2_quote', 'tpm2_checkquote', 'tpm2_pcrextend', 'tpm2_pcrread', 'tpm2_print', 'tpm2_flushcontext']

export type SwtpmAvailability = {available: true} | {available: false; reason: string}

export function swtpmAvailability(): SwtpmAvailability {
  const missing = TOOLS.filter((tool) => {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], {stdio: 'ignore'})
      return false
    } catch {
      return true
    }
  })
  if (missing.length === 0) return {available: true}
  return {available: false, reason: `${missing.join(', ')} not installed (apt-get install -y swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0)`}
}

/** Two consecutive free loopback ports, found by binding both. */
async function freePortPair(): Promise<number> {
  const bind = (port: number) =>
    new Promise<ReturnType<typeof createServer> | undefined>((resolve) => {
      const server = createServer()
      server.once('error', () => resolve(undefined))
      server.listen(port, '127.0.0.1', () => resolve(server))
    })
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000)
    const first = await bind(port)
    const second = first && (await bind(port + 1))
    await Promise.all([first, second].map((server) => server && new Promise((resolve) => server.close(resolve))))
    if (first && second) return port
  }
  throw new Error('no two consecutive free ports for swtpm')
}

async function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

export interface AttestationKey {
  /** The saved context of the AK (valid while this swtpm runs). */
  context: string
  /** SPKI PEM, as `tpm2_createak -f pem` writes it. */
  pem: string
}

export interface Quote {
  /** TPMS_ATTEST bytes. */
  quote: Buffer
  /** TPMT_SIGNATURE bytes (`-f tss`, the default). */
  signature: Buffer
  /** The files tpm2_checkquote reads. */
  files: {message: string; signature: string; pcrs: string}
}

export interface SwtpmOptions {
  /**
   * Manufacture the TPM first with `swtpm_setup`, as a vendor would: EKs (RSA 2048 and ECC) persisted, and their
   * certificates in NV (0x01c00002, …) signed by a test CA made in the TPM's own folder (its root and issuer in
   * `ca/`), never the machine-wide /var/lib/swtpm-localca.
   */
  manufactured?: boolean
}

/** swtpm_setup's configuration for a CA private to `dir`, so parallel tests never share one. */
function writeLocalCaConfig(dir: string): string {
  const ca = join(dir, 'ca')
  mkdirSync(ca)
  writeFileSync(join(dir, 'swtpm-localca.conf'), `statedir = ${ca}\nsigningkey = ${ca}/signkey.pem\nissuercert = ${ca}/issuercert.pem\ncertserial = ${ca}/certserial\n`)
  writeFileSync(join(dir, 'swtpm-localca.options'), '--platform-manufacturer Outpost\n--platform-version 2.1\n--platform-model test\n')
  const setup = join(dir, 'swtpm_setup.conf')
  writeFileSync(setup, `create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = ${dir}/swtpm-localca.conf\ncreate_certs_tool_options = ${dir}/swtpm-localca.options\nactive_pcr_banks = sha256\n`)
  return setup
}

export class Swtpm {
  private counter = 0

  private constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
    readonly tcti: string,
  ) {}

  static async start(options: SwtpmOptions = {}): Promise<Swtpm> {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-swtpm-'))
    if (options.manufactured) {
      const config = writeLocalCaConfig(dir)
      await run('swtpm_setup', ['--tpm2', '--tpmstate', dir, '--config', config, '--create-ek-cert', '--create-platform-cert', '--lock-nvram', '--overwrite'])
    }
    const port = await freePortPair()
    const child = spawn(
      'swtpm',
      ['socket', '--tpmstate', `dir=${dir}`, '--tpm2', '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`, '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`, '--flags', 'not-need-init,startup-clear'],
      {stdio: 'ignore'},
    )
    const tpm = new Swtpm(child, dir, `swtpm:host=127.0.0.1,port=${port}`)
    for (let waited = 0; !(await accepting(port)); waited += 10) {
      if (child.exitCode !== null || waited > 10_000) {
        await tpm.stop()
        throw new Error(`swtpm did not start on port ${port}`)
      }
      await sleep(10)
    }
    await tpm.tool('tpm2_createek', ['-c', 'ek.ctx', '-G', 'ecc', '-u', 'ek.pub'])
    return tpm
  }

  /** Runs a tpm2-tools command in the TPM's folder, then flushes transient objects. Returns stdout. */
  async tool(name: string, args: string[]): Promise<string> {
    const options = {cwd: this.dir, env: {...process.env, TPM2TOOLS_TCTI: this.tcti}}
    try {
      const {stdout} = await run(name, args, options)
      return stdout
    } finally {
      await run('tpm2_flushcontext', ['-t'], options)
    }
  }

  /** The test CA's root and issuing certificates (PEM), for checking an EK certificate's chain; manufactured TPMs only. */
  caCertificates(): {root: string; issuer: string} {
    return {root: readFileSync(this.path('ca/swtpm-localca-rootca-cert.pem'), 'utf8'), issuer: readFileSync(this.path('ca/issuercert.pem'), 'utf8')}
  }

  path(name: string): string {
    return join(this.dir, name)
  }

  /** An attestation key under the endorsement key: ECDSA P-256 or RSASSA 2048, both with sha256. */
  async createAk(type: 'ecc' | 'rsa'): Promise<AttestationKey> {
    const name = `ak-${type}-${++this.counter}`
    const scheme = type === 'ecc' ? 'ecdsa' : 'rsassa'
    await this.tool('tpm2_createak', ['-C', 'ek.ctx', '-c', `${name}.ctx`, '-G', type, '-g', 'sha256', '-s', scheme, '-u', `${name}.pem`, '-f', 'pem'])
    return {context: this.path(`${name}.ctx`), pem: readFileSync(this.path(`${name}.pem`), 'utf8')}
  }

  async quote(ak: AttestationKey, qualifyingData: Uint8Array, selection = 'sha256:0,1,2,3,4,5,6,7'): Promise<Quote> {
    const name = `quote-${++this.counter}`
    const files = {message: this.path(`${name}.msg`), signature: this.path(`${name}.sig`), pcrs: this.path(`${name}.pcrs`)}
    await this.tool('tpm2_quote', ['-c', ak.context, '-l', selection, '-q', Buffer.from(qualifyingData).toString('hex'), '-g', 'sha256', '-m', files.message, '-s', files.signature, '-o', files.pcrs])
    return {quote: readFileSync(files.message), signature: readFileSync(files.signature), files}
  }

  async extendPcr(index: number, digestHex: string): Promise<void> {
    await this.tool('tpm2_pcrextend', [`${index}:sha256=${digestHex}`])
  }

  /** The raw values of the selected sha256 PCRs, in order. */
  async pcrValues(pcrs: readonly number[]): Promise<Buffer[]> {
    const file = this.path(`pcrs-${++this.counter}.bin`)
    await this.tool('tpm2_pcrread', [`sha256:${pcrs.join(',')}`, '-o', file])
    const raw = readFileSync(file)
    return pcrs.map((_, index) => raw.subarray(index * 32, index * 32 + 32))
  }

  /** `tpm2_checkquote`: true when it accepts the quote for this key and qualifying data. */
  async checkquote(akPem: string, quote: Quote, qualifyingData: Uint8Array): Promise<boolean> {
    const pem = this.path(`check-${++this.counter}.pem`)
    writeFileSync(pem, akPem)
    try {
      await run('tpm2_checkquote', ['-u', pem, '-m', quote.files.message, '-s', quote.files.signature, '-f', quote.files.pcrs, '-g', 'sha256', '-q', Buffer.from(qualifyingData).toString('hex')])
      return true
    } catch {
      return false
    }
  }

  /** `tpm2_print -t TPMS_ATTEST`: the fields as tpm2-tools reads them, an independent parser to compare against. */
  async printAttest(quote: Quote): Promise<Record<string, string>> {
    const {stdout} = await run('tpm2_print', ['-t', 'TPMS_ATTEST', quote.files.message])
    const fields: Record<string, string> = {}
    for (const line of stdout.split('\n')) {
      const match = /^\s*(\w+):\s*(\S.*)$/.exec(line)
      if (match?.[1] && match[2] !== undefined && !(match[1] in fields)) fields[match[1]] = match[2].trim()
    }
    return fields
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve))
      this.child.kill('SIGTERM')
      await exited
    }
    rmSync(this.dir, {recursive: true, force: true})
  }
}
