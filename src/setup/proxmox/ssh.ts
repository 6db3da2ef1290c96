import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import type {Client, ConnectConfig} from 'ssh2'

import {ExitCode, UserError, describeError} from '../../core/errors.js'

/** How the wizard logs in: any of these that are given are offered to the server, key first. */
export interface SshAuth {
  privateKeyFile?: string
  privateKeyPassphrase?: string
  password?: string
  /** SSH_AUTH_SOCK of a running ssh-agent. */
  agentSocket?: string
}

export interface SshTarget {
  host: string
  port: number
  username: string
  auth: SshAuth
}

export interface CommandResult {
  code: number
  stdout: string
  stderr: string
}

/** The host key as OpenSSH shows it (`ssh-keygen -lf`): `SHA256:` and unpadded base64 of the key blob's SHA-256. */
export function hostKeyFingerprint(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')
}

/**
 * Decides whether a host key is trusted. It is called during the handshake with the key's fingerprint; refusing
 * ends the connection before any credential is sent.
 */
export type HostKeyDecision = (fingerprint: string) => Promise<boolean>

/** Quotes one argument for the remote POSIX shell. */
export function shellQuote(argument: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(argument) ? argument : `'${argument.replaceAll("'", `'\\''`)}'`
}

export function commandLine(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ')
}

/** One SSH connection to the host; commands run one at a time through the login user's shell. */
export class SshSession {
  private constructor(
    private readonly client: Client,
    readonly hostFingerprint: string,
  ) {}

  /**
   * Connects and authenticates. ssh2 is imported here, on first use, so that `outpost --version` and the other
   * commands never load it.
   */
  static async connect(target: SshTarget, decide: HostKeyDecision, timeoutMs = 20_000): Promise<SshSession> {
    const {default: ssh2} = await import('ssh2')
    const client = new ssh2.Client()
    const where = `${target.username}@${target.host}:${target.port}`
    let seen: string | undefined
    let refused = false
    let decisionError: unknown
    const config: ConnectConfig = {
      host: target.host,
      port: target.port,
      username: target.username,
      readyTimeout: timeoutMs,
      hostVerifier: (key: Buffer, verify: (valid: boolean) => void) => {
        seen = hostKeyFingerprint(key)
        decide(seen).then(
          (trusted) => {
            refused = !trusted
            verify(trusted)
          },
          (error: unknown) => {
            decisionError = error
            refused = true
            verify(false)
          },
        )
      },
      ...(target.auth.password === undefined ? {} : {password: target.auth.password, tryKeyboard: true}),
      ...(target.auth.agentSocket ? {agent: target.auth.agentSocket} : {}),
    }
    if (target.auth.privateKeyFile) {
      config.privateKey = readPrivateKey(target.auth.privateKeyFile)
      if (target.auth.privateKeyPassphrase) config.passphrase = target.auth.privateKeyPassphrase
    }
    if (target.auth.password !== undefined) {
      // Servers that only offer keyboard-interactive (PAM) ask for the password that way.
      client.on('keyboard-interactive', (_name, _instructions, _lang, prompts, finish) => finish(prompts.map(() => target.auth.password ?? '')))
    }

    await new Promise<void>((resolve, reject) => {
      client.once('ready', () => resolve())
      client.once('error', (error: Error & {level?: string}) => {
        if (decisionError) reject(decisionError)
        else if (refused) {
          reject(new UserError(`the host key of ${target.host}:${target.port} (${seen ?? 'unknown'}) was not accepted`, {code: 'host_key_refused', exit: ExitCode.refused}))
        } else if (error.level === 'client-authentication') {
          reject(
            new UserError(`SSH login to ${where} failed: the server refused every credential offered`, {
              code: 'ssh_auth_failed',
              exit: ExitCode.refused,
              suggestion: 'check --ssh-user and the credential: --ssh-key FILE, OUTPOST_SSH_PASSWORD, or a key in the ssh-agent (SSH_AUTH_SOCK)',
            }),
          )
        } else if (error.level === 'client-timeout') {
          reject(new UserError(`SSH to ${where} timed out`, {code: 'ssh_unreachable', exit: ExitCode.unreachable, suggestion: 'check the host, --ssh-port and the firewall'}))
        } else {
          reject(
            new UserError(`SSH to ${where} failed: ${error.message}`, {
              code: 'ssh_unreachable',
              exit: ExitCode.unreachable,
              suggestion: 'check the host, --ssh-port and that sshd runs there',
              cause: error,
            }),
          )
        }
      })
      try {
        client.connect(config)
      } catch (error) {
        // ssh2 throws at once for a key it cannot parse (or one that needs a passphrase).
        reject(
          new UserError(`cannot use the SSH key ${target.auth.privateKeyFile ?? ''}: ${describeError(error)}`, {
            code: 'ssh_key_invalid',
            exit: ExitCode.config,
            suggestion: 'pass an OpenSSH private key with --ssh-key; for an encrypted one set OUTPOST_SSH_KEY_PASSPHRASE',
          }),
        )
      }
    })
    return new SshSession(client, seen ?? '')
  }

  /** Runs one command, with `stdin` written to it; a non-zero exit is a result, not an error (the caller knows what it means). */
  exec(command: string, stdin?: string): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      this.client.exec(command, (error, channel) => {
        if (error) {
          reject(new UserError(`could not run \`${command}\` over SSH: ${error.message}`, {code: 'ssh_failed', exit: ExitCode.unreachable}))
          return
        }
        const stdout: Buffer[] = []
        const stderr: Buffer[] = []
        channel.on('data', (chunk: Buffer) => stdout.push(chunk))
        channel.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
        channel.on('close', (code: number | null, signal?: string) => {
          resolve({
            // A command killed by a signal has no exit code; report it as failed.
            code: code ?? (signal ? 128 : 255),
            stdout: Buffer.concat(stdout).toString('utf8'),
            stderr: Buffer.concat(stderr).toString('utf8'),
          })
        })
        channel.end(stdin)
      })
    })
  }

  close(): void {
    this.client.end()
  }
}

function readPrivateKey(file: string): Buffer {
  try {
    return readFileSync(file)
  } catch {
    throw new UserError(`cannot read the SSH key ${file}`, {code: 'ssh_key_missing', exit: ExitCode.config, suggestion: 'check the path given to --ssh-key'})
  }
}
