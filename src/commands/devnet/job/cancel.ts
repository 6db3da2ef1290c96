import * as Args from '@oclif/core/args'

import {BaseCommand} from '../../../cli/base-command.js'
import type {JobDetail} from '../../../core/api/job-schemas.js'
import {cancelJob} from '../../../core/api/renter-jobs.js'
import {devnetTarget, renterFlags} from '../../../devnet/flags.js'
import {onDevnet, renterClient} from '../../../devnet/renter.js'

export default class DevnetJobCancel extends BaseCommand {
  static override summary = 'Cancel an open job as its renter (a leased one runs to its verdict)'
  static override args = {id: Args.string({description: 'job id', required: true})}
  static override flags = renterFlags

  async run(): Promise<JobDetail> {
    const {args, flags} = await this.parse(DevnetJobCancel)
    const target = devnetTarget(flags, this.configDirectory)
    const client = await renterClient(target)
    const job = await onDevnet(target, () => cancelJob(client, args.id))
    this.log(`job ${job.job_id}: ${job.status}`)
    return job
  }
}
