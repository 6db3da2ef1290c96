import {cpus, totalmem} from 'node:os'

import {abuseBench} from './bench/abuse.js'
import {agentBench} from './bench/agent.js'
import {hardwareBench} from './bench/hardware.js'
import {jobsBench} from './bench/jobs.js'
import {lifecycleBench} from './bench/lifecycle.js'
import {proxmoxBench} from './bench/proxmox.js'
import {serverBench} from './bench/server.js'
import {soakBench} from './bench/soak.js'
import {startupBench} from './bench/startup.js'
import type {BenchRow, BenchSection} from './bench/types.js'

const sections: [string, BenchSection][] = [
  ['startup', startupBench],
  ['server', serverBench],
  ['abuse', abuseBench],
  ['agent', agentBench],
  ['lifecycle', lifecycleBench],
  ['jobs', jobsBench],
  ['proxmox', proxmoxBench],
  ['hardware', hardwareBench],
  ['soak', soakBench],
]

function format(rows: BenchRow[]): string {
  const cells = rows.map((row) => [
    row.group,
    row.name,
    `${Number.isInteger(row.value) ? row.value : row.value.toFixed(2)} ${row.unit}`,
    row.ratio === undefined ? '' : `${row.ratio.toFixed(2)} ×`,
    row.note ?? '',
  ])
  const header = ['group', 'figure', 'value', 'ratio', 'against / target']
  const widths = header.map((title, column) => Math.max(title.length, ...cells.map((cell) => (cell[column] ?? '').length)))
  const line = (cell: string[]) => cell.map((text, column) => text.padEnd(widths[column] ?? 0)).join('  ').trimEnd()
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n')
}

const only = process.argv.slice(2)
const rows: BenchRow[] = []
for (const [name, section] of sections) {
  if (only.length > 0 && !only.includes(name)) continue
  process.stderr.write(`bench: ${name}...\n`)
  rows.push(...(await section()))
}
const cpu = cpus()[0]?.model ?? 'unknown CPU'
console.log(`Outpost bench on ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${new Date().toISOString()}`)
console.log(format(rows))
