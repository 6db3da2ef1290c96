import type {LoadedConfig} from '../core/config/load.js'
import {describeError, isUserError} from '../core/errors.js'
import type {CheckResult} from './doctor.js'

/**
 * `doctor`'s attestation line, when `[attestation] enabled`: the TPM answers at the configured TCTI and holds, at
 * the AK handle, the key `outpost attest enroll` recorded. The enrolment itself is the marketplace's (`attest status`).
 */
export async function attestationCheck(loaded: LoadedConfig): Promise<CheckResult> {
  const config = loaded.config.attestation
  const name = 'attestation'
  try {
    // Loaded here: the TPM tools (and execa under them) stay out of every doctor run without attestation.
    const {readAkRecord, openTpm} = await import('../attest/attest.js')
    const tpm = openTpm(config)
    const identity = await tpm.identify()
    const recorded = readAkRecord(loaded)
    const answers = `the TPM answers at ${config.tcti} (${identity.manufacturer} ${identity.vendor})`
    if (!recorded || recorded.handle !== config.ak_handle) {
      return {name, status: 'fail', message: `${answers}, and no attestation key is recorded for ${config.ak_handle}`, remedy: 'run `outpost attest enroll --main-key-file FILE`'}
    }
    const present = await tpm.attestationKeyPublic()
    if (present === undefined) {
      return {name, status: 'fail', message: `${answers}, and ${config.ak_handle} is empty: the TPM was cleared or replaced since the enrolment`, remedy: 'run `outpost attest enroll --main-key-file FILE` again'}
    }
    if (present.replace(/\s/g, '') !== recorded.ak_public_pem.replace(/\s/g, '')) {
      return {name, status: 'fail', message: `${answers}, and ${config.ak_handle} holds another key than the enrolled AK`, remedy: 'run `outpost attest enroll --main-key-file FILE` again, or set [attestation] ak_handle'}
    }
    return {name, status: 'pass', message: `${answers}; AK at ${config.ak_handle}, quotes over ${config.pcrs}`}
  } catch (error) {
    return {name, status: 'fail', message: describeError(error), ...(isUserError(error) && error.suggestion ? {remedy: error.suggestion} : {})}
  }
}
