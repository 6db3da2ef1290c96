import {Flags} from '@oclif/core'

/** The flags of every command signed with the provider main key. */
export const mainKeyFlags = {
  'main-key-file': Flags.string({description: 'provider main key file', env: 'OUTPOST_MAIN_KEY_FILE'}),
  'passphrase-file': Flags.string({description: 'file holding the passphrase of an encrypted key'}),
}

export const yesFlag = {
  yes: Flags.boolean({char: 'y', description: 'confirm without asking (needed with no terminal, in CI, and with --json)'}),
}

/** `2026-11-28T20:42:16.000Z (in 7.0 days)` */
export function describeTime(at: number, now = Date.now()): string {
  const deltaMs = at - now
  const hours = Math.abs(deltaMs) / 3_600_000
  const span = hours >= 48 ? `${(hours / 24).toFixed(1)} days` : hours >= 1 ? `${hours.toFixed(1)} h` : `${Math.max(0, Math.round(Math.abs(deltaMs) / 1000))} s`
  return `${new Date(at).toISOString()} (${deltaMs >= 0 ? `in ${span}` : `${span} ago`})`
}
