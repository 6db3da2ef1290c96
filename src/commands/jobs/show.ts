import * as Args from '@oclif/core/args'

import {BaseCommand} from '../../cli/base-command.js'
import {mainKeyFlags} from '../../cli/flags.js'
import {JobsApi} from '../../core/api/jobs.js'
import {agentKeySession, mainKeySession} from '../../core/api/session.js'
import {LEASE_HEADER, leaseRow, showJob, type JobReport} from '../../jobs/leases.js'
import {renderTable} from '../../ui/table.js'

export default class JobsShow extends BaseCommand {
  static override summary = 'Show one job this provider leased: the job, its leases, the signed result and the verdict'
  static override description =
    'Takes a job id or a lease id. The leases come from the marketplace (agent key); the result envelopes this host ' +
    "submitted from the agent's state dir. With --main-key-file the marketplace's own record of the job is read " +
    'too: its settled result and the verdict with its detail.'

  static override examples = ['<%= config.bin %> jobs show 9f2c...', '<%= config.bin %> jobs show 9f2c... --main-key-file provider-main.key --json']

  static override args = {id: Args.string({description: 'job id or lease id', required: true})}
  static override flags = {...mainKeyFlags}

  async run(): Promise<JobReport> {
    const {args, flags} = await this.parse(JobsShow)
    const loaded = this.loadConfig(flags.config)
    const session = agentKeySession(loaded, await this.agentKey(flags))
    const mainKeyClient = flags['main-key-file'] ? mainKeySession(loaded, await this.mainKey(flags, 'reading a job with its result')).client : undefined
    const report = await showJob({api: new JobsApi(session.client, session.providerPubkey), mainKeyClient, stateDir: loaded.paths.stateDir, id: args.id})
    const {job} = report
    this.log(`job           ${report.job_id}`)
    if (job) {
      this.log(`kind          ${job.kind}, ${job.status}`)
      this.log(`program       ${job.program.digest} (${job.program.size_bytes} bytes)`)
      this.log(`input         ${job.input.digest} (${job.input.size_bytes} bytes)`)
      this.log(`reward        ${job.reward.amount ?? `auction, at most ${job.reward.max_fee ?? '?'}`}; collateral ${job.collateral}`)
      this.log(`deadline      ${new Date(job.deadline).toISOString()}`)
    }
    if (report.leases.length > 0) this.log(renderTable(LEASE_HEADER, report.leases.map(leaseRow)))
    const {result, verdict} = report
    if (result) this.log(`result        output ${result.output.digest} (${result.output.size_bytes} bytes), ${result.finished_at - result.started_at} ms, signed by ${result.signer}`)
    else this.log('result        none yet')
    if (verdict) this.log(`verdict       ${verdict.verdict}${verdict.reward ? `, ${verdict.reward} paid` : ''}${verdict.reason ? `: ${verdict.reason}` : ''}${verdict.detail ? ` (${verdict.detail})` : ''}`)
    for (const source of report.sources) this.log(`from: ${source}`)
    return report
  }
}
