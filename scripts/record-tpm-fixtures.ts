import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {Swtpm, swtpmAvailability, type AttestationKey} from '../test/support/swtpm.js'

/**
 * Records real TPM 2.0 quotes from a software TPM as fixtures for test/core/tpm-quote.test.ts: an ECDSA and an RSA
 * attestation key, quotes over known qualifying data, one after a PCR was extended, one over another selection, each
 * with what `tpm2_print -t TPMS_ATTEST` reads from it. Run: `npx tsx scripts/record-tpm-fixtures.ts`.
 */

const OUTPUT = fileURLToPath(new URL('../test/fixtures/tpm/quotes.json', import.meta.url))
const SELECTION = 'sha256:0,1,2,3,4,5,6,7'
const PCRS = [0, 1, 2, 3, 4, 5, 6, 7]

const availability = swtpmAvailability()
if (!availability.available) throw new Error(availability.reason)

const version = (command: string, args: string[]) => execFileSync(command, args, {encoding: 'utf8'}).split('\n')[0]?.trim() ?? ''
const tpm = await Swtpm.start()
try {
  const record = async (ak: AttestationKey, label: string, selection = SELECTION) => {
    const qualifying = createHash('sha256').update(label).digest()
    const quote = await tpm.quote(ak, qualifying, selection)
    const pcrs = selection === SELECTION ? PCRS : selection.split(':')[1]?.split(',').map(Number) ?? []
    return {
      label,
      selection,
      qualifying_data: qualifying.toString('hex'),
      quote_b64: quote.quote.toString('base64'),
      signature_b64: quote.signature.toString('base64'),
      pcr_values: (await tpm.pcrValues(pcrs)).map((value) => value.toString('hex')),
      tpm2_print: await tpm.printAttest(quote),
    }
  }
  const ecc = await tpm.createAk('ecc')
  const rsa = await tpm.createAk('rsa')
  const eccQuotes = [await record(ecc, 'envelope one')]
  const rsaQuotes = [await record(rsa, 'envelope one')]
  eccQuotes.push(await record(ecc, 'envelope two, PCRs 0 and 1', 'sha256:0,1'))
  await tpm.extendPcr(7, createHash('sha256').update('a changed boot').digest('hex'))
  eccQuotes.push(await record(ecc, 'envelope three, after PCR 7 was extended'))
  const fixtures = {
    recorded_with: [version('swtpm', ['--version']), version('tpm2_quote', ['--version'])],
    ecc: {ak_pem: ecc.pem, quotes: eccQuotes},
    rsa: {ak_pem: rsa.pem, quotes: rsaQuotes},
  }
  writeFileSync(OUTPUT, JSON.stringify(fixtures, null, 2) + '\n')
  console.log(`wrote ${OUTPUT}`)
} finally {
  await tpm.stop()
}
