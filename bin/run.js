#!/usr/bin/env node
// `outpost --version` answers before @oclif/core loads: it is the one call scripts make in a loop.
const args = process.argv.slice(2)
if (args.length === 1 && (args[0] === '--version' || args[0] === '-v')) {
  const {readFileSync} = await import('node:fs')
  const {version} = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`outpost-cli/${version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else {
  const [{execute}, {settings}] = await Promise.all([import('@oclif/core/execute'), import('@oclif/core/settings')])
  // Always the built commands: with NODE_ENV=development or test (a developer's shell, a test runner) oclif would
  // otherwise load src/*.ts through tsx when a tsconfig.json is beside it, twice as slow and not what was built.
  settings.enableAutoTranspile = false
  await execute({dir: import.meta.url})
}
