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

/** Resident memory of a process, in MiB. */
export function rssMib(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match ? Number(match[1]) / 1024 : Number.NaN
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
