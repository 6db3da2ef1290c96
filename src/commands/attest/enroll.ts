import * as Flags from '@oclif/core/flags'

import {enrollAttestation, type EnrollReport} from '../../attest/attest.js'
import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags} from '../../cli/flags.js'
import {mainKeySession} from '../../core/api/session.js'
import {readKeyFileContent} from '../../core/keys.js'

export default class AttestEnroll extends BaseCommand {
  static override summary = "Enroll this host's TPM attestation key for the agent key (signed with the provider main key)"
  static override description = `Makes an attestation key (AK) under the TPM's endorsement key, or reuses the one this host recorded, keeps it at [attestation] ak_handle, reads the EK certificate when the TPM has one, and enrolls the AK with the marketplace for the agent key of this config, over the PCRs of [attestation] pcrs (PROTOCOL §14). With --pin-pcrs the PCR digest the TPM reports now is enrolled as the expected one: a quote from any other boot state is then refused. Enrolling again replaces the enrolment.
Exit codes: 3 tpm2-tools missing or the config invalid, 4 the AK handle holds another key, 5 the TPM or the marketplace does not answer.`
  static override examples = ['<%= config.bin %> attest enroll --main-key-file ~/provider-main.key', '<%= config.bin %> attest enroll --pin-pcrs --json']

  static override flags = {
    ...mainKeyFlags,
    'pin-pcrs': Flags.boolean({description: 'enroll the current PCR digest as the expected one (quotes after a firmware, boot loader or kernel change are then refused until you enroll again)'}),
  }

  async run(): Promise<EnrollReport> {
    const {flags} = await this.parse(AttestEnroll)
    const loaded = this.loadConfig(flags.config)
    const agentPubkey = readKeyFileContent(loaded.paths.keyFile).public_key
    const session = mainKeySession(loaded, await this.mainKey(flags, 'enrolling an attestation key'))
    const report = await enrollAttestation(loaded, session, agentPubkey, {pinPcrs: flags['pin-pcrs']})
    this.log(`TPM             ${report.tpm.manufacturer} ${report.tpm.vendor} (firmware ${report.tpm.firmware})`)
    this.log(`attestation key ${report.ak_created ? 'created' : 'reused'} at ${report.ak_handle}`)
    if (report.ek_certificate) {
      this.log(`EK certificate  ${report.ek_certificate.subject.replaceAll('\n', ', ')}, issued by ${report.ek_certificate.issuer.replaceAll('\n', ', ')}${report.ek_certificate.matches_ek ? '' : ' (does NOT match this TPM\'s EK)'}`)
    } else {
      this.log('EK certificate  none in the TPM (NV 0x01c00002, 0x01c0000a): the enrolment cannot be tied to a TPM vendor')
    }
    this.log(`enrolled        for agent key ${report.agent_pubkey} over ${report.pcr_selection}${report.expected_pcr_digest ? `, pinned to PCR digest ${report.expected_pcr_digest}` : ''}`)
    if (!loaded.config.attestation.enabled) this.warning(`[attestation] enabled is false in ${loaded.path}: set it to true so the agent attests its results`)
    return report
  }
}
