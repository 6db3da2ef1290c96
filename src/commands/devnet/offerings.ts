import {BaseCommand} from '../../cli/base-command.js'
import {listOfferings, type Offering} from '../../core/api/renter.js'
import {renterFlags} from '../../devnet/flags.js'
import {devnetReader} from '../../devnet/renter.js'

export default class DevnetOfferings extends BaseCommand {
  static override summary = 'List the offerings on a devnet'
  static override flags = {endpoint: renterFlags.endpoint}

  async run(): Promise<{offerings: Offering[]}> {
    const {flags} = await this.parse(DevnetOfferings)
    const result = await listOfferings(devnetReader(flags.endpoint))
    if (result.offerings.length === 0) this.log('no offerings yet')
    for (const offering of result.offerings) {
      this.log(
        `${offering.offering_id}  ${offering.name}  ${offering.product_type} ${offering.cpu_cores} cpu ${offering.memory_mb} MB ` +
          `${offering.storage_gb} GB  ${offering.price_per_hour}/h${offering.available === false ? '  (paused)' : ''}`,
      )
    }
    return result
  }
}
