import {BaseCommand} from '../../cli/base-command.js'
import {listOfferings, type Offering} from '../../core/api/renter.js'
import {devnetTarget, renterFlags} from '../../devnet/flags.js'
import {devnetReader, onDevnet} from '../../devnet/renter.js'

export default class DevnetOfferings extends BaseCommand {
  static override summary = 'List the offerings on a devnet'
  static override flags = renterFlags

  async run(): Promise<{offerings: Offering[]}> {
    const {flags} = await this.parse(DevnetOfferings)
    const target = devnetTarget(flags, this.configDirectory)
    const result = await onDevnet(target, () => listOfferings(devnetReader(target)))
    if (result.offerings.length === 0) this.log('no offerings yet: a provider publishes them with `outpost register`')
    for (const offering of result.offerings) {
      this.log(
        `${offering.offering_id}  ${offering.name}  ${offering.product_type} ${offering.cpu_cores} cpu ${offering.memory_mb} MB ` +
          `${offering.storage_gb} GB  ${offering.price_per_hour}/h${offering.available === false ? '  (paused)' : ''}`,
      )
    }
    return result
  }
}
