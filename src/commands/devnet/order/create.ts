import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../../../cli/base-command.js'
import {duration, sshPublicKey} from '../../../cli/flags.js'
import {createOrder, type RenterOrder} from '../../../core/api/renter.js'
import {isAmount} from '../../../core/decimal.js'
import {devnetTarget, renterFlags} from '../../../devnet/flags.js'
import {onDevnet, renterClient} from '../../../devnet/renter.js'

const amountFlag = (description: string) =>
  Flags.string({
    description,
    required: true,
    parse: async (value) => {
      if (!isAmount(value)) throw new Error(`"${value}" is not a decimal amount with at most 6 decimals, like 0.5`)
      return value
    },
  })

export default class DevnetOrderCreate extends BaseCommand {
  static override summary = 'Open an order that providers bid on, as the devnet renter'
  static override description =
    'When the order closes, the lowest bid wins and becomes a contract of that provider, rented by the devnet renter key ' +
    '(which also opens the sealed credentials). Follow it with `outpost devnet order show`.'

  static override examples = [
    '<%= config.bin %> devnet order create --cpu-cores 2 --memory-mb 4096 --storage-gb 40 --max-price 0.5 --closes-in 2m --ssh-pubkey ~/.ssh/id_ed25519.pub',
    '<%= config.bin %> devnet order create --cpu-cores 8 --memory-mb 65536 --storage-gb 200 --gpu-count 1 --gpu-model a100 --region eu-central --max-price 3 --duration-hours 24 --ssh-pubkey ~/.ssh/id_ed25519.pub --json',
  ]

  static override flags = {
    ...renterFlags,
    'cpu-cores': Flags.integer({description: 'CPU cores wanted', required: true, min: 1}),
    'memory-mb': Flags.integer({description: 'memory wanted, MiB', required: true, min: 1}),
    'storage-gb': Flags.integer({description: 'storage wanted, GiB', required: true, min: 1}),
    'gpu-count': Flags.integer({description: 'GPUs wanted', default: 0, min: 0}),
    'gpu-model': Flags.string({description: 'GPU model wanted, like a100'}),
    'max-price': amountFlag('the most to pay per hour, in tokens (bids above it are refused)'),
    'duration-hours': Flags.integer({description: 'how long to rent the machine', default: 1, min: 1, max: 8760}),
    region: Flags.string({description: 'region the machine must run in'}),
    'closes-in': duration({description: 'when bidding closes, like 30s, 5m, 1h (at most 7d)', default: '60s'}),
    'ssh-pubkey': sshPublicKey({description: 'SSH public key to install on the machine: the key, or its file (like ~/.ssh/id_ed25519.pub)', required: true}),
  }

  async run(): Promise<RenterOrder> {
    const {flags} = await this.parse(DevnetOrderCreate)
    const target = devnetTarget(flags, this.configDirectory)
    const client = await renterClient(target)
    const order = await onDevnet(target, () => createOrder(client, {
      requirements: {
        cpu_cores: flags['cpu-cores'],
        memory_mb: flags['memory-mb'],
        storage_gb: flags['storage-gb'],
        gpu_count: flags['gpu-count'],
        ...(flags['gpu-model'] ? {gpu_model: flags['gpu-model']} : {}),
      },
      max_price_per_hour: flags['max-price'],
      duration_hours: flags['duration-hours'],
      ...(flags.region ? {region: flags.region} : {}),
      closes_in_seconds: Math.max(1, Math.round(flags['closes-in'] / 1000)),
      ssh_pubkey: flags['ssh-pubkey'],
    }))
    this.log(`order ${order.order_id}: ${order.status}, bidding closes ${new Date(order.closes_at).toISOString()}`)
    this.log(`follow it with: outpost devnet order show ${[order.order_id, ...target.flags].join(' ')}`)
    return order
  }
}
