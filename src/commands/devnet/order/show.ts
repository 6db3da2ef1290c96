import * as Args from '@oclif/core/args'

import {BaseCommand} from '../../../cli/base-command.js'
import {getOrder, type RenterOrder} from '../../../core/api/renter.js'
import {devnetTarget, renterFlags} from '../../../devnet/flags.js'
import {onDevnet, renterClient} from '../../../devnet/renter.js'
import {printable} from '../../../core/printable.js'

export default class DevnetOrderShow extends BaseCommand {
  static override summary = 'Show an order, its bids and the contract it became, as its renter sees them'
  static override args = {id: Args.string({description: 'order id', required: true})}
  static override flags = renterFlags

  async run(): Promise<RenterOrder> {
    const {args, flags} = await this.parse(DevnetOrderShow)
    const target = devnetTarget(flags, this.configDirectory)
    const client = await renterClient(target)
    const order = await onDevnet(target, () => getOrder(client, args.id))
    const wanted = order.requirements
    this.log(printable(`order ${order.order_id}: ${order.status}`))
    this.log(`  ${wanted.cpu_cores} cpu, ${wanted.memory_mb} MB, ${wanted.storage_gb} GB${wanted.gpu_count > 0 ? `, ${wanted.gpu_count} GPU ${wanted.gpu_model ?? ''}`.trimEnd() : ''}`)
    this.log(`  up to ${order.max_price_per_hour}/h for ${order.duration_hours} h${order.region ? ` in ${order.region}` : ''}; bidding closes ${new Date(order.closes_at).toISOString()}`)
    for (const bid of order.bids ?? []) this.log(printable(`  bid ${bid.price_per_hour}/h by ${bid.provider_pubkey} (${bid.status})`))
    if (order.contract_id) this.log(printable(`  contract ${order.contract_id}: outpost devnet contract show ${[order.contract_id, ...target.flags].join(' ')}`))
    return order
  }
}
