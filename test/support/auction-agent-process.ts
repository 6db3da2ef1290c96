import {z} from 'zod'

import {fromHex} from '../../src/core/hex.js'
import {keyPairFromSeed} from '../../src/core/signing.js'
import {startAuctionAgent} from './auction-agent.js'

/**
 * An auction agent in a process of its own, for the test that SIGKILLs it: options as JSON in OUTPOST_AUCTION_AGENT,
 * every log line as JSON on stdout. Stops on SIGTERM; SIGKILL is the point.
 */

const Options = z.object({
  endpoint: z.string(),
  providerPubkey: z.string(),
  agentSeedHex: z.string(),
  bidding: z.record(z.string(), z.unknown()),
  stateDir: z.string(),
})

const options = Options.parse(JSON.parse(process.env.OUTPOST_AUCTION_AGENT ?? '{}'))
const agent = await startAuctionAgent({
  endpoint: options.endpoint,
  providerPubkey: options.providerPubkey,
  agentKey: keyPairFromSeed(fromHex(options.agentSeedHex, 32, 'agent seed')),
  bidding: options.bidding,
  stateDir: options.stateDir,
  log: (line) => process.stdout.write(JSON.stringify(line) + '\n'),
})
process.stdout.write(JSON.stringify({level: 'info', msg: 'ready'}) + '\n')
process.once('SIGTERM', () => void agent.stop().then(() => process.exit(0)))
