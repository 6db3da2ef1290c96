import {Help} from '@oclif/core'

const GETTING_STARTED = `Getting started as a provider:
  1. outpost init --endpoint <marketplace URL> --main-key   keys and outpost.toml
  2. edit outpost.toml: [provider] and your [[offerings]]
  3. outpost register --main-key-file <main key>             publish, delegate the agent key
  4. outpost doctor --verify-api                             check everything
  5. outpost run                                             provision rentals (or: outpost service install)

Try it all locally first: npm run demo, or outpost devnet start.
`

/** `outpost` with no arguments starts with the five steps a new provider takes, then the usual help. */
export default class OutpostHelp extends Help {
  protected override async showRootHelp(): Promise<void> {
    if (process.argv.slice(2).length === 0) this.log(GETTING_STARTED)
    await super.showRootHelp()
  }
}
