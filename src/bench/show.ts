import {z} from 'zod'

import type {BenchmarkReport} from '../core/api/benchmarks.js'

/**
 * Reading reports back. A marketplace keeps whatever results a client sent, so each figure is read on its own and a
 * report from another tool shows what it has, with '-' for the rest.
 */

const figure = z.number().nonnegative()
const ReadableResults = z.object({
  cpu: z.object({single_core_events_per_second: figure, all_cores_events_per_second: figure}).partial().optional().catch(undefined),
  memory: z.object({triad_mib_per_second: figure}).partial().optional().catch(undefined),
  storage: z.object({rand_read_iops: figure, rand_write_iops: figure, seq_read_mib_per_second: figure, direct_io: z.boolean()}).partial().optional().catch(undefined),
  network: z.object({latency_ms_median: figure}).partial().optional().catch(undefined),
  gpu: z.object({gpus: z.array(z.object({name: z.string()}))}).partial().optional().catch(undefined),
})

export const REPORT_SUMMARY_HEADER = ['submitted', 'report', 'cpu 1 / all (ev/s)', 'triad MiB/s', 'rand r/w IOPS', 'seq read MiB/s', 'latency ms', 'GPU']

const show = (value: number | undefined) => (value === undefined ? '-' : String(value))

export function reportSummaryRow(report: BenchmarkReport): string[] {
  const results = ReadableResults.safeParse(report.results)
  const {cpu, memory, storage, network, gpu} = results.success ? results.data : {cpu: undefined, memory: undefined, storage: undefined, network: undefined, gpu: undefined}
  return [
    report.created_at === undefined ? '-' : new Date(report.created_at).toISOString().replace(/\.\d+Z$/, 'Z'),
    (report.report_id ?? report.challenge_id).slice(0, 12),
    `${show(cpu?.single_core_events_per_second)} / ${show(cpu?.all_cores_events_per_second)}`,
    show(memory?.triad_mib_per_second),
    `${show(storage?.rand_read_iops)} / ${show(storage?.rand_write_iops)}`,
    show(storage?.seq_read_mib_per_second),
    show(network?.latency_ms_median),
    gpu?.gpus ? (gpu.gpus.map((device) => device.name).join(', ') || 'none') : '-',
  ]
}
