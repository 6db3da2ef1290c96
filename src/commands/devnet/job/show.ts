import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {writeFileSync} from 'node:fs'
import {resolve} from 'node:path'

import {BaseCommand} from '../../../cli/base-command.js'
import type {JobDetail} from '../../../core/api/job-schemas.js'
import {getJob} from '../../../core/api/renter-jobs.js'
import {jobOutput} from '../../../devnet/jobs.js'
import {devnetTarget, renterFlags} from '../../../devnet/flags.js'
import {onDevnet, renterClient} from '../../../devnet/renter.js'
import {printable} from '../../../core/printable.js'

export default class DevnetJobShow extends BaseCommand {
  static override summary = 'Show a job, its result and the devnet\'s verdict, as its renter sees them'
  static override args = {id: Args.string({description: 'job id', required: true})}
  static override flags = {
    ...renterFlags,
    output: Flags.string({description: 'write the result\'s output bytes to this file'}),
  }

  async run(): Promise<JobDetail & {output_file?: string}> {
    const {args, flags} = await this.parse(DevnetJobShow)
    const target = devnetTarget(flags, this.configDirectory)
    const client = await renterClient(target)
    const job = await onDevnet(target, () => getJob(client, args.id))
    this.log(printable(`job ${job.job_id}: ${job.kind}, ${job.status}${job.status_reason ? ` (${job.status_reason})` : ''}`))
    const reward = job.reward.mode === 'fixed' ? `reward ${job.reward.amount}` : `auction, max fee ${job.reward.max_fee}${job.reward.amount ? `, cleared at ${job.reward.amount}` : ''}`
    this.log(printable(`  ${reward}, collateral ${job.collateral}, ${job.attempts_left} attempts left, deadline ${new Date(job.deadline).toISOString()}`))
    if (job.winner) this.log(printable(`  auction won by ${job.winner}`))
    if (job.verdict) {
      const verdict = job.verdict.verdict === 'accepted' ? `accepted, ${job.verdict.reward ?? '0'} paid` : `rejected: ${job.verdict.reason ?? 'no reason given'}`
      this.log(printable(`  result ${job.verdict.verdict === 'accepted' ? 'verified' : 'refused'}: ${verdict}`))
    }
    if (job.result) this.log(printable(`  output ${job.result.output.digest} (${job.result.output.size_bytes} bytes), signed by agent ${job.result.signer}`))
    if (!flags.output) return job
    const bytes = await onDevnet(target, () => jobOutput(client, job.job_id))
    const file = resolve(flags.output)
    writeFileSync(file, bytes)
    this.log(printable(`  output written to ${file}`))
    return {...job, output_file: file}
  }
}
