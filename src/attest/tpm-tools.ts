import {execa} from 'execa'
import {z} from 'zod'

import {ExitCode, UserError} from '../core/errors.js'

/**
 * tpm2-tools, run one at a time against one TPM. The TCTI (`[attestation] tcti`) names the TPM: the kernel's resource
 * manager (device:/dev/tpmrm0) on a real host, a software TPM (swtpm:host=…,port=…) in tests. A software TPM has no
 * resource manager, so every command is followed by `tpm2_flushcontext -t` (three loaded objects fill it), and the
 * commands are serialised: a flush in one would drop the object another is using.
 */

const COMMAND_TIMEOUT_MS = 30_000
const MAX_OUTPUT = 1024 * 1024
const INSTALL = 'apt-get install -y tpm2-tools (and libtss2-tcti-swtpm0 for a software TPM)'

/** A tpm2-tools command the TPM refused; `tpmCode` is the TPM response code when the tool printed one. */
export class TpmCommandError extends UserError {
  constructor(
    message: string,
    readonly tpmCode: number | undefined,
  ) {
    super(message, {code: 'tpm_command_failed', exit: ExitCode.failed, suggestion: 'run the command by hand with TPM2TOOLS_TCTI set as in [attestation] tcti to see the whole error'})
    this.name = 'TpmCommandError'
  }
}

export function tpmToolsMissing(tool: string): UserError {
  return new UserError(`${tool} was not found: tpm2-tools is not installed`, {code: 'tpm2_tools_missing', exit: ExitCode.config, suggestion: INSTALL})
}

/** Why the TCTI could not open the TPM, said with what to do about it. */
export function tpmUnreachable(tcti: string, stderr: string): UserError {
  const lines = stderr.split('\n')
  const cause = lines.find((line) => /Failed to open|Cannot connect|Connection refused|Permission denied/.test(line))?.replace(/^.*?\(\)\s*/, '').trim()
  let suggestion = `check [attestation] tcti (now "${tcti}")`
  if (/Permission denied/.test(stderr)) suggestion = 'add the agent\'s user to the tss group (it owns /dev/tpmrm0), or run the agent as a user that may open it'
  else if (/No such file/.test(stderr)) suggestion = `this host has no TPM at ${tcti.replace(/^device:/, '')}: enable the TPM in the firmware (fTPM or PTT), or set [attestation] tcti`
  else if (/swtpm|Cannot connect/.test(stderr)) suggestion = `start the software TPM that [attestation] tcti names ("${tcti}"), or set the tcti of the real one (device:/dev/tpmrm0)`
  else if (/Could not load tcti|tctildr/.test(stderr) && !/^(device|swtpm|mssim|tabrmd):/.test(tcti)) suggestion = `"${tcti}" is not a TCTI tpm2-tools knows: use device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321`
  return new UserError(`the TPM at "${tcti}" does not answer${cause ? `: ${cause}` : ''}`, {code: 'tpm_unreachable', exit: ExitCode.unreachable, suggestion})
}

/** The response code in `ERROR: Esys_…(0x18B) - …`, as tpm2-tools prints a TPM error. */
function responseCode(stderr: string): number | undefined {
  const match = /\(0x([0-9a-fA-F]+)\)\s*-/.exec(stderr)
  return match?.[1] ? Number.parseInt(match[1], 16) : undefined
}

export class TpmTools {
  private queue: Promise<unknown> = Promise.resolve()

  constructor(readonly tcti: string) {}

  /** Runs one tpm2-tools command in `cwd` and returns its stdout; commands never overlap. */
  run(tool: string, args: readonly string[], cwd: string): Promise<string> {
    const next = this.queue.then(() => this.runNow(tool, args, cwd))
    this.queue = next.catch(() => undefined)
    return next
  }

  private async runNow(tool: string, args: readonly string[], cwd: string): Promise<string> {
    try {
      return await this.exec(tool, args, cwd)
    } finally {
      await this.exec('tpm2_flushcontext', ['-t'], cwd).catch(() => undefined)
    }
  }

  private async exec(tool: string, args: readonly string[], cwd: string): Promise<string> {
    const result = await execa(tool, args, {
      cwd,
      env: {TPM2TOOLS_TCTI: this.tcti, PATH: process.env.PATH ?? '/usr/bin:/bin'},
      extendEnv: false,
      timeout: COMMAND_TIMEOUT_MS,
      maxBuffer: MAX_OUTPUT,
      reject: false,
      stdin: 'ignore',
    })
    if (result.exitCode === 0) return result.stdout
    if (result.code === 'ENOENT') throw tpmToolsMissing(tool)
    if (/Could not load tcti|Failed to instantiate TCTI/.test(result.stderr)) throw tpmUnreachable(this.tcti, result.stderr)
    if (result.timedOut) throw new TpmCommandError(`${tool} did not finish within ${COMMAND_TIMEOUT_MS / 1000} s: the TPM at "${this.tcti}" is not answering`, undefined)
    const said = result.stderr
      .split('\n')
      .filter((line) => line.startsWith('ERROR:'))
      .map((line) => line.replace(/^ERROR:\s*/, '').trim())
      .slice(-2)
      .join(' | ')
    throw new TpmCommandError(`${tool} failed${said ? `: ${said}` : ` with exit code ${result.exitCode ?? result.signal ?? 'unknown'}`}`, responseCode(result.stderr))
  }
}

/** TPM_RC_HANDLE for the first handle: nothing is at that handle (`tpm2_readpublic` of an empty persistent handle). */
export const TPM_RC_HANDLE_1 = 0x18b

/** `tpm2_getcap handles-nv-index` / `handles-persistent`: a YAML list of hex handles, possibly empty. */
export const HandleList = z
  .string()
  .transform((text) => text.split('\n').map((line) => line.trim()).filter((line) => line.length > 0))
  .pipe(z.array(z.string().regex(/^- 0x[0-9a-fA-F]{1,8}$/, 'expected a handle line like "- 0x1C00002"').transform((line) => Number.parseInt(line.slice(4), 16))))

const PROPERTY = /^(TPM2_PT_[A-Z0-9_]+):$/
const FIELD = /^ {2}(raw|value): (.*)$/

/**
 * `tpm2_getcap properties-fixed`: blocks of `TPM2_PT_NAME:` then `  raw: 0x…` and an optional `  value: "…"`. Lines
 * of other shapes (a list under a property in newer tools) are skipped; the properties read are checked by schema.
 */
export function parseFixedProperties(text: string): Map<string, {raw: number; value?: string}> {
  const properties = new Map<string, {raw: number; value?: string}>()
  let current: string | undefined
  for (const line of text.split('\n')) {
    const property = PROPERTY.exec(line)
    if (property?.[1]) {
      current = property[1]
      continue
    }
    const field = FIELD.exec(line)
    if (!field || !current) continue
    const entry = properties.get(current) ?? {raw: Number.NaN}
    if (field[1] === 'raw') entry.raw = Number(field[2])
    else entry.value = (field[2] ?? '').replace(/^"(.*)"$/, '$1')
    properties.set(current, entry)
  }
  return properties
}

export const TpmIdentity = z.object({
  family: z.string().regex(/^2\.0$/, 'the device is not a TPM 2.0'),
  manufacturer: z.string(),
  vendor: z.string(),
  firmware: z.string(),
})
export type TpmIdentity = z.infer<typeof TpmIdentity>

/** The 4-byte ASCII a TPM packs into a u32 property (manufacturer, vendor strings), without trailing NULs and spaces. */
function asciiOf(raw: number | undefined): string {
  if (raw === undefined || !Number.isFinite(raw)) return ''
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32BE(raw >>> 0)
  return bytes.toString('latin1').replace(/[\0 ]+$/, '').replace(/[^\x20-\x7e]/g, '')
}

/** Who made the TPM, from its fixed properties: the family must be "2.0", the rest is said as found. */
export function tpmIdentity(text: string): TpmIdentity {
  const properties = parseFixedProperties(text)
  const raw = (name: string) => properties.get(`TPM2_PT_${name}`)?.raw
  const firmware = [raw('FIRMWARE_VERSION_1'), raw('FIRMWARE_VERSION_2')].map((value) => (value === undefined || !Number.isFinite(value) ? '' : (value >>> 0).toString(16).padStart(8, '0'))).join('')
  const parsed = TpmIdentity.safeParse({
    family: asciiOf(raw('FAMILY_INDICATOR')),
    manufacturer: asciiOf(raw('MANUFACTURER')),
    vendor: ['VENDOR_STRING_1', 'VENDOR_STRING_2', 'VENDOR_STRING_3', 'VENDOR_STRING_4'].map((name) => asciiOf(raw(name))).join('').trim(),
    firmware,
  })
  if (!parsed.success) throw new TpmCommandError(`tpm2_getcap properties-fixed: ${parsed.error.issues.map((issue) => issue.message).join('; ')}`, undefined)
  return parsed.data
}
