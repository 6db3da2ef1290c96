import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags, yesFlag} from '../../cli/flags.js'
import type {ProviderDispute} from '../../core/api/disputes.js'
import {ExitCode, UserError} from '../../core/errors.js'
import {renderTable} from '../../ui/table.js'
import {answerableDispute, EVIDENCE_HEADER, evidenceRows, sendEvidence} from '../../dispute/disputes.js'
import {evidenceFromAgentState, evidenceFromFile, mergeDrafts, type EvidenceDraft} from '../../dispute/evidence.js'
import {mainKeySession} from '../../core/api/session.js'
import {confirmOrRefuse} from '../../ui/confirm.js'
import {canPrompt} from '../../ui/interactive.js'

export default class DisputeEvidence extends BaseCommand {
  static override summary = 'Answer a dispute with evidence: from a file, or built from the agent\'s own records (--auto)'
  static override description =
    '--file takes {"provider_response", "evidence": [{type, description, file | data | hash, url?}]}; a file is hashed ' +
    '(SHA-256) here. --auto reads the agent state dir for the contract: its signed usage records and journal entries. ' +
    'What will be submitted is shown first; in a terminal you are asked, unless --yes.'

  static override examples = [
    '<%= config.bin %> dispute evidence 5c1e... --auto',
    '<%= config.bin %> dispute evidence 5c1e... --file evidence.json --yes',
    '<%= config.bin %> dispute evidence 5c1e... --auto --dry-run --json',
  ]

  static override args = {id: Args.string({description: 'dispute id', required: true})}
  static override flags = {
    ...mainKeyFlags,
    ...yesFlag,
    file: Flags.string({description: 'evidence JSON file'}),
    auto: Flags.boolean({description: "build the evidence from the agent's state dir for the dispute's contract"}),
    response: Flags.string({description: "the provider's account (default: from the file, or a summary of the --auto evidence)"}),
    'dry-run': Flags.boolean({description: 'show what would be submitted, and stop'}),
  }

  async run(): Promise<{dispute: ProviderDispute; draft: EvidenceDraft; submitted: boolean}> {
    const {args, flags} = await this.parse(DisputeEvidence)
    if (!flags.file && !flags.auto) {
      throw new UserError('say where the evidence comes from', {code: 'evidence_source', exit: ExitCode.usage, suggestion: 'pass --file evidence.json, --auto, or both'})
    }
    const loaded = this.loadConfig(flags.config)
    const mainKey = await this.mainKey(flags, 'answering a dispute')
    const session = mainKeySession(loaded, mainKey)
    const dispute = await answerableDispute(session, args.id)
    const draft = mergeDrafts([
      ...(flags.file ? [evidenceFromFile(flags.file)] : []),
      ...(flags.auto ? [evidenceFromAgentState(loaded.paths.stateDir, dispute.contract_id)] : []),
    ])
    this.log(`dispute ${dispute.dispute_id} on contract ${dispute.contract_id} (${dispute.type}): ${dispute.description}`)
    this.log(`response: ${flags.response ?? draft.provider_response ?? '(none)'}`)
    this.log(renderTable(EVIDENCE_HEADER, evidenceRows(draft.evidence)))
    for (const note of draft.notes) this.log(`note: ${note}`)
    if (flags['dry-run']) return {dispute, draft, submitted: false}
    // Evidence adds to the record and can't be taken back: asked in a terminal; a script has seen it printed above.
    if (canPrompt() && !this.jsonEnabled()) await confirmOrRefuse(`Submit these ${draft.evidence.length} evidence items?`, 'submitting evidence', {yes: flags.yes})
    const answered = await sendEvidence(session, args.id, draft, flags.response)
    this.log(`submitted: dispute ${answered.dispute_id} is ${answered.status}, ${answered.evidence.length} evidence items in all`)
    return {dispute: answered, draft, submitted: true}
  }
}
