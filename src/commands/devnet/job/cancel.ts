import {Args} from '@oclif/core'
import {resolve} from 'node:path'

import type {JobDetail} from '../../../core/api/job-schemas.js'
import {cancelJob} from '../../../core/api/renter-jobs.js'
import {renterFlags} from '../../../marketplace/devnet-flags.js'
import {defaultDevnetDataDir} from '../../../marketplace/devnet.js'
import {renterClient} from '../../../marketplace/renter.js'
import {BaseCommand} from '../../../ui/base-command.js'

export default class DevnetJobCancel extends BaseCommand {
  static override summary = 'Cancel an open job as its renter (a leased one runs to its verdict)'
  static override args = {id: Args.string({description: 'job id', required: true})}
  static override flags = renterFlags

  async run(): Promise<JobDetail> {
    const {args, flags} = await this.parse(DevnetJobCancel)
    const dataDir = resolve(flags['data-dir'] ?? defaultDevnetDataDir(this.configDirectory))
    const job = await cancelJob(await renterClient(dataDir, flags.endpoint), args.id)
    this.log(`job ${job.job_id}: ${job.status}`)
    return job
  }
}
