import {existsSync, readFileSync} from 'node:fs'

import {ExitCode, UserError} from '../../core/errors.js'
import {writeFileAtomic} from '../../core/files.js'
import type {HostKeyDecision} from './ssh.js'

/**
 * Host key trust: a fingerprint passed with --host-key-fingerprint is the only one accepted; otherwise the one
 * remembered from an earlier run (outpost's own known_hosts next to the config); otherwise a person confirms the
 * fingerprint shown, and with nobody to ask the run stops. A key that differs from the expected one always stops it.
 */

export type HostKeySource = 'flag' | 'known' | 'confirmed'

export interface HostKeyPolicy {
  /** `host:port`, the entry's name in the known-hosts file. */
  hostId: string
  knownHostsFile: string
  /** --host-key-fingerprint */
  expected?: string
  /** Asks a person whether to trust an unknown key; undefined when there is nobody to ask. */
  confirm?: (fingerprint: string) => Promise<boolean>
}

/** `SHA256:abc...` or just the base64 part, as `ssh-keygen -lf` prints it. */
export function normalizeHostKeyFingerprint(value: string): string {
  const base64 = value.trim().replace(/^SHA256:/i, '').replace(/=+$/, '')
  if (!/^[A-Za-z0-9+/]{43}$/.test(base64)) {
    throw new UserError(`"${value}" is not an SSH SHA-256 host key fingerprint`, {
      code: 'invalid_flag',
      exit: ExitCode.usage,
      suggestion: 'pass it as `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it on the host: SHA256:<43 characters>',
    })
  }
  return `SHA256:${base64}`
}

export function readKnownHost(file: string, hostId: string): string | undefined {
  if (!existsSync(file)) return undefined
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [name, fingerprint] = line.trim().split(/\s+/)
    if (name === hostId && fingerprint) return fingerprint
  }
  return undefined
}

export function rememberHost(file: string, hostId: string, fingerprint: string): void {
  const others = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((line) => line.trim() !== '' && line.trim().split(/\s+/)[0] !== hostId) : []
  writeFileAtomic(file, [...others, `${hostId} ${fingerprint}`].join('\n') + '\n', 0o600)
}

/** Where the expected fingerprint comes from before connecting, or undefined when a person must confirm it. */
export function expectedHostKey(policy: HostKeyPolicy): {fingerprint: string; source: 'flag' | 'known'} | undefined {
  if (policy.expected !== undefined) return {fingerprint: normalizeHostKeyFingerprint(policy.expected), source: 'flag'}
  const known = readKnownHost(policy.knownHostsFile, policy.hostId)
  return known ? {fingerprint: known, source: 'known'} : undefined
}

export function hostKeyDecision(policy: HostKeyPolicy): {decide: HostKeyDecision; source: () => HostKeySource | undefined} {
  const expected = expectedHostKey(policy)
  let source: HostKeySource | undefined
  const decide: HostKeyDecision = async (fingerprint) => {
    if (expected) {
      if (expected.fingerprint !== fingerprint) {
        throw new UserError(
          `HOST KEY MISMATCH for ${policy.hostId}: it presented ${fingerprint}, but ${expected.source === 'flag' ? '--host-key-fingerprint says' : `${policy.knownHostsFile} remembers`} ${expected.fingerprint}`,
          {
            code: 'host_key_mismatch',
            exit: ExitCode.refused,
            suggestion:
              'someone may be intercepting the connection: check the key on the host console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub); if the host was reinstalled, pass the new one with --host-key-fingerprint',
          },
        )
      }
      source = expected.source
      return true
    }
    if (!policy.confirm) {
      throw new UserError(`the host key of ${policy.hostId} is unknown (${fingerprint}) and there is no terminal to confirm it`, {
        code: 'host_key_unknown',
        exit: ExitCode.usage,
        suggestion: 'compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host, then pass --host-key-fingerprint (or OUTPOST_SSH_HOST_KEY_FINGERPRINT)',
      })
    }
    const trusted = await policy.confirm(fingerprint)
    if (trusted) source = 'confirmed'
    return trusted
  }
  return {decide, source: () => source}
}
