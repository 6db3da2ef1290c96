import {Help} from '@oclif/core/help'

const GETTING_STARTED = `Getting started as a provider:
  1. outpost init --main-key                        keys and outpost.toml: asks the marketplace URL, who you
                                                    are and what you sell (sized from this host)
  2. outpost register --main-key-file <main key>    publish, delegate the agent key
  3. outpost doctor --verify-api                    check everything
  4. outpost run                                    provision rentals (or: outpost service install)

Try it all locally first: npm run demo, or outpost devnet start (it prints the next steps).
`

/** `outpost` with no arguments starts with the four steps a new provider takes, then the usual help. */
export default class OutpostHelp extends Help {
  protected override async showRootHelp(): Promise<void> {
    if (process.argv.slice(2).length === 0) this.log(GETTING_STARTED)
    await super.showRootHelp()
  }
}
