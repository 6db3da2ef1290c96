import {BaseCommand} from '../../cli/base-command.js'
import {marketplaceFlags, passphraseFile} from '../../cli/flags.js'
import {renderTable} from '../../ui/table.js'
import type {BidPreview} from '../../agent/bidding/preview.js'

export default class BidPreviewCommand extends BaseCommand {
  static override summary = 'Price the open orders ([bidding]) and the open auction jobs ([jobs.bidding]) and show the decision for each, bidding nothing'
  static override description =
    'A dry run for tuning prices: each open order is decided as a freshly started agent would decide it now (filters, ' +
    'capacity from the provisioner minus the contracts held, the price of the strategy, the order\'s max price). Works ' +
    'with [bidding] enabled = false too.'

  static override examples = ['<%= config.bin %> bid preview', '<%= config.bin %> bid preview --json']

  static override flags = {
    ...marketplaceFlags,
    'passphrase-file': passphraseFile,
  }

  async run(): Promise<BidPreview> {
    const {flags} = await this.parse(BidPreviewCommand)
    const loaded = this.loadConfig(flags.config)
    const key = await this.agentKey(flags)
    // Loaded here: the provisioners stay out of every other command's start.
    const {previewBids} = await import('../../agent/bidding/preview.js')
    const preview = await previewBids(loaded, key)
    const capacity = preview.capacity
    this.log(`strategy ${preview.strategy}${preview.enabled ? '' : ' (bidding is disabled: `outpost run` bids nothing)'}`)
    this.log(capacity ? `capacity ${capacity.cpu_cores} cpu, ${capacity.memory_mb} MB, ${capacity.storage_gb} GB, ${capacity.gpu_count} GPU; ${preview.held_contracts} contracts held` : 'capacity unknown: the provisioner reports none')
    this.renderAuctions(preview)
    if (preview.orders.length === 0) {
      this.log('no open orders')
      return preview
    }
    const rows = preview.orders.map((order) => [
      order.order_id,
      `${order.requirements.cpu_cores}/${order.requirements.memory_mb}/${order.requirements.storage_gb}/${order.requirements.gpu_count}`,
      order.max_price_per_hour,
      order.decision === 'bid' ? `bid ${order.price_per_hour ?? ''}` : `declined: ${order.reason ?? ''}`,
      (order.decision === 'bid' ? order.why : order.detail) ?? '',
    ])
    this.log(renderTable(['order', 'cpu/MB/GB/GPU', 'max/h', 'decision', 'why'], rows))
    return preview
  }

  private renderAuctions(preview: BidPreview): void {
    const {auctions} = preview
    if (!auctions) return
    this.log(`auction jobs (§13): strategy ${auctions.strategy}, ${auctions.promised} committed to or won and not done${auctions.enabled ? '' : ' (bidding is off: [jobs] or [jobs.bidding] is disabled)'}`)
    if (auctions.jobs.length === 0) {
      this.log('no open auction jobs')
      return
    }
    const rows = auctions.jobs.map((job) => [
      job.job_id,
      job.kind,
      job.max_fee ?? '',
      job.decision === 'commit' ? `commit ${job.fee ?? ''}` : job.decision === 'declined' ? `declined: ${job.reason ?? ''}` : 'committed already',
      (job.decision === 'commit' ? job.why : job.detail) ?? '',
    ])
    this.log(renderTable(['job', 'kind', 'max fee', 'decision', 'why'], rows))
  }
}
