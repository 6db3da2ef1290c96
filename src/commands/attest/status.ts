import * as Flags from '@oclif/core/flags'

import {attestationStatus, type AttestationStatus} from '../../attest/attest.js'
import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFile} from '../../cli/flags.js'
import {ExitCode} from '../../core/errors.js'
import {readKeyFileContent} from '../../core/keys.js'

export default class AttestStatus extends BaseCommand {
  static override summary = 'Show whether the TPM answers and what attestation key is enrolled for the agent key'
  static override description = 'Reads the TPM through [attestation] tcti and the public list of enrolled keys; signs nothing and needs no secret. Exits 0 when results can be attested (ready), 6 when not.'
  static override examples = ['<%= config.bin %> attest status', '<%= config.bin %> attest status --json']

  static override flags = {
    'main-key-file': mainKeyFile(),
    'provider-pubkey': Flags.string({description: 'provider public key (default: [marketplace] provider_pubkey)'}),
  }

  async run(): Promise<AttestationStatus> {
    const {flags} = await this.parse(AttestStatus)
    const loaded = this.loadConfig(flags.config)
    const agentPubkey = readKeyFileContent(loaded.paths.keyFile).public_key
    const providerPubkey = flags['provider-pubkey'] ?? loaded.config.marketplace.provider_pubkey ?? flags['main-key-file']?.publicKey
    const status = await attestationStatus(loaded, agentPubkey, providerPubkey)
    const {tpm, ak, marketplace} = status
    this.log(`attestation     ${status.enabled ? 'enabled' : 'disabled'} ([attestation] enabled)`)
    this.log(`TPM             ${tpm.answers ? `answers at ${status.tcti}: ${tpm.identity.manufacturer} ${tpm.identity.vendor}` : `${tpm.error}${tpm.remedy ? `\n                → ${tpm.remedy}` : ''}`}`)
    this.log(`AK              ${ak.handle}: ${ak.in_tpm === null ? 'unknown' : ak.in_tpm ? 'in the TPM' : 'not in the TPM'}${ak.recorded ? (ak.matches_record === false ? ', NOT the key recorded here' : ', recorded here') : ', not recorded here'}`)
    if (marketplace.reachable) {
      const pins = marketplace.pinned ? `, pinned${marketplace.pcrs_match_pinned === null ? '' : marketplace.pcrs_match_pinned ? ' (PCRs match)' : ' (PCRs DIFFER: quotes will be refused)'}` : ''
      this.log(`enrolled        ${marketplace.enrolled ? `yes, over ${marketplace.pcr_selection ?? ''}${pins}${marketplace.matches_local_ak === false ? ', with ANOTHER AK than this TPM holds' : ''}` : 'no'}`)
    } else {
      this.log(`enrolled        unknown: ${marketplace.error}`)
    }
    this.log(`ready           ${status.ready ? 'yes' : `no: ${nextStep(status)}`}`)
    if (!status.ready) process.exitCode = ExitCode.checksFailed
    return status
  }
}

/** What to do first when results can't be attested yet. */
function nextStep(status: AttestationStatus): string {
  if (!status.tpm.answers) return status.tpm.remedy ?? 'make the TPM answer at [attestation] tcti'
  if (!status.marketplace.reachable) return 'reach the marketplace (see the line above), then run this again'
  if (status.marketplace.pcrs_match_pinned === false) return 'the boot state changed since the enrolment: if the change was yours (a firmware or kernel update), run `outpost attest enroll --pin-pcrs --main-key-file FILE` again'
  return 'run `outpost attest enroll --main-key-file FILE`'
}
