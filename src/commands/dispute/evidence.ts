import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags, marketplaceFlags, yesFlag} from '../../cli/flags.js'
import type {ProviderDispute} from '../../core/api/disputes.js'
import {mainKeySession} from '../../core/api/session.js'
import {ExitCode, UserError} from '../../core/errors.js'
import {answerableDispute, EVIDENCE_HEADER, evidenceRows, planEvidence, sendEvidence, type EvidencePlan} from '../../dispute/disputes.js'
import {evidenceFromAgentState, evidenceFromFile, mergeDrafts, type EvidenceDraft} from '../../dispute/evidence.js'
import {evidenceFromJobs} from '../../dispute/job-evidence.js'
import {confirmOrRefuse} from '../../ui/confirm.js'
import {renderTable} from '../../ui/table.js'

export default class DisputeEvidence extends BaseCommand {
  static override summary = "Answer a dispute with evidence: from a file, or built from the agent's own records (--auto)"
  static override description =
    '--file takes {"provider_response", "evidence": [{type, description, file | data | hash, url?}]}; a file is hashed ' +
    '(SHA-256) here. --auto reads the agent state dir for the contract: its signed usage records and journal entries. ' +
    'What will be submitted is shown first, then confirmed: asked in a terminal, --yes otherwise (evidence cannot be ' +
    'taken back). Evidence is kept by its hash: items the dispute holds already are left out, so running it twice adds ' +
    'nothing the second time. With --auto, each --job adds the signed result envelopes of that job (PROTOCOL §12): ' +
    "those the agent kept in its state dir and the result the marketplace settled, with its verdict."

  static override examples = [
    '<%= config.bin %> dispute evidence 5c1e... --auto',
    '<%= config.bin %> dispute evidence 5c1e... --file evidence.json --yes',
    '<%= config.bin %> dispute evidence 5c1e... --auto --dry-run --json',
    '<%= config.bin %> dispute evidence 5c1e... --auto --job 9f2c... --yes',
  ]

  static override args = {id: Args.string({description: 'dispute id', required: true})}
  static override flags = {
    ...marketplaceFlags,
    ...mainKeyFlags,
    ...yesFlag,
    file: Flags.string({description: 'evidence JSON file'}),
    auto: Flags.boolean({description: "build the evidence from the agent's state dir for the dispute's contract"}),
    job: Flags.string({description: 'with --auto: also the signed result envelopes of this job (repeatable)', multiple: true, dependsOn: ['auto']}),
    response: Flags.string({description: "the provider's account (default: from the file, or a summary of the --auto evidence)"}),
    'dry-run': Flags.boolean({description: 'show what would be submitted, and stop'}),
  }

  async run(): Promise<{dispute: ProviderDispute; draft: EvidenceDraft; plan: EvidencePlan; submitted: boolean}> {
    const {args, flags} = await this.parse(DisputeEvidence)
    if (!flags.file && !flags.auto) {
      throw new UserError('say where the evidence comes from', {code: 'evidence_source', exit: ExitCode.usage, suggestion: 'pass --file evidence.json, --auto, or both'})
    }
    const loaded = this.loadConfig(flags.config)
    const mainKey = await this.mainKey(flags, 'answering a dispute')
    const session = mainKeySession(loaded, mainKey)
    const dispute = await answerableDispute(session, args.id)
    const jobIds = flags.job ?? []
    const draft = mergeDrafts([
      ...(flags.file ? [evidenceFromFile(flags.file)] : []),
      ...(flags.auto ? [contractEvidence(loaded.paths.stateDir, dispute.contract_id, jobIds.length > 0)] : []),
      ...(jobIds.length > 0 ? [await evidenceFromJobs({client: session.client, stateDir: loaded.paths.stateDir, jobIds})] : []),
    ])
    const plan = planEvidence(dispute, draft, flags.response)
    this.log(`dispute ${dispute.dispute_id} on contract ${dispute.contract_id} (${dispute.type}): ${dispute.description}`)
    this.log(`response: ${plan.provider_response}`)
    if (plan.evidence.length > 0) this.log(renderTable(EVIDENCE_HEADER, evidenceRows(plan.evidence)))
    if (plan.already_submitted > 0) this.log(`${plan.already_submitted} of the ${draft.evidence.length} items are on the dispute already (same hash), and are left out`)
    for (const note of draft.notes) this.log(`note: ${note}`)
    if (flags['dry-run']) return {dispute, draft, plan, submitted: false}
    if (!plan.changes) {
      this.log('nothing new to submit: the dispute holds every item and this response already')
      return {dispute, draft, plan, submitted: false}
    }
    // Evidence adds to the record and can't be taken back: confirmed like accepting a dispute.
    await confirmOrRefuse(`Submit ${plan.evidence.length} evidence item(s)? They can't be taken back.`, 'submitting evidence', {yes: flags.yes, json: this.jsonEnabled()})
    const answered = await sendEvidence(session, args.id, plan)
    this.log(`submitted: dispute ${answered.dispute_id} is ${answered.status}, ${answered.evidence.length} evidence items in all`)
    return {dispute: answered, draft, plan, submitted: true}
  }
}

/** The agent's records of the contract; with jobs named too, a contract it holds nothing about is a note, not a failure. */
function contractEvidence(stateDir: string, contractId: string, jobsNamed: boolean): EvidenceDraft {
  try {
    return evidenceFromAgentState(stateDir, contractId)
  } catch (error) {
    if (!jobsNamed || !(error instanceof UserError) || error.code !== 'no_evidence') throw error
    return {evidence: [], notes: [`the agent's state dir holds nothing about contract ${contractId}: only the jobs' evidence is included`]}
  }
}
