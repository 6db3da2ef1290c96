import {readFileSync} from 'node:fs'
import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {ExitCode, UserError} from '../../core/errors.js'
import {ManualRequestStore, type ManualRequest} from '../../provisioners/manual/requests.js'
import {instanceName} from '../../provisioners/provisioner.js'
import {BaseCommand} from '../../cli/base-command.js'

export default class ContractComplete extends BaseCommand {
  static override summary = 'Answer a manual provisioning request: the machine is ready'
  static override description =
    'For [provisioner] type = "manual": records the machine you made by hand for the contract, and the waiting agent ' +
    'reports it provisioned (with the password sealed to the renter).'

  static override examples = ['<%= config.bin %> contract complete 3f2a...e9 --ip 203.0.113.7 --password-file ./root-password']

  static override args = {id: Args.string({description: 'contract id (32 hex characters)', required: true})}

  static override flags = {
    ip: Flags.string({description: "the machine's IPv4 address", required: true}),
    ipv6: Flags.string({description: "the machine's IPv6 address"}),
    'ssh-port': Flags.integer({description: 'SSH port', default: 22, min: 1, max: 65_535}),
    'external-id': Flags.string({description: 'your own name for the machine (default: outpost-<contract>)'}),
    username: Flags.string({description: 'login user for the renter', default: 'root'}),
    'password-file': Flags.string({description: 'file holding the login password, sealed to the renter'}),
  }

  async run(): Promise<ManualRequest> {
    const {args, flags} = await this.parse(ContractComplete)
    const loaded = this.loadConfig(flags.config)
    let password: string | undefined
    if (flags['password-file']) {
      password = readFileSync(flags['password-file'], 'utf8').replace(/\r?\n$/, '')
      if (!password) throw new UserError(`${flags['password-file']} is empty`, {code: 'usage', exit: ExitCode.usage})
    }
    const store = new ManualRequestStore(loaded.paths.stateDir)
    const request = store.complete(args.id, {
      external_id: flags['external-id'] ?? instanceName(args.id),
      ip_address: flags.ip,
      ...(flags.ipv6 ? {ipv6_address: flags.ipv6} : {}),
      ssh_port: flags['ssh-port'],
      ...(password ? {credentials: {username: flags.username, password}} : {}),
    })
    this.log(`contract ${args.id}: machine ${request.instance?.external_id} at ${flags.ip}:${flags['ssh-port']} recorded; the agent reports it provisioned`)
    return {...request, instance: request.instance && {...request.instance, credentials: undefined}}
  }
}
