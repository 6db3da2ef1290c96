import {readFileSync} from 'node:fs'

/**
 * A workload for the local backend that costs next to nothing (a tiny perl TCP listener), for the sections that
 * measure the agent and not its workloads.
 */
export const PERL_LISTENER = [
  'perl',
  '-MIO::Socket::INET',
  '-e',
  '$s=IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>$ENV{PORT},Listen=>64,ReuseAddr=>1) or die "$!"; while($c=$s->accept){print $c "ok\\n"; close $c}',
]

export interface ResidentMemory {
  rss: number
  /** The process's own memory: V8's heap, the allocator's, stacks. */
  anon: number
  /** Pages of files it maps (mostly the node binary's code), shared with other processes and the page cache. */
  file: number
}

/** Resident memory of a process, in MiB. */
export function residentMemory(pid: number): ResidentMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const mib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
    return match ? Number(match[1]) / 1024 : Number.NaN
  }
  return {rss: mib('VmRSS'), anon: mib('RssAnon'), file: mib('RssFile')}
}

export function describeResident({anon, file}: ResidentMemory): string {
  return `${anon.toFixed(1)} MiB its own + ${file.toFixed(1)} MiB file-backed (the node binary's pages, shared)`
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
