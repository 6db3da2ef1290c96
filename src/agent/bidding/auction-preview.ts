import type {ApiClient} from '../../core/api/client.js'
import type {Job} from '../../core/api/job-schemas.js'
import {JobsApi} from '../../core/api/jobs.js'
import type {LoadedConfig} from '../../core/config/load.js'
import {sha256Hex} from '../../core/signing.js'
import {createExecutors} from '../../executors/index.js'
import {decideAuctionJob} from './auction-decide.js'
import {auctionJournalPath, readAuctionRecords} from './auction-journal.js'
import type {AuctionDeclineReason} from './auction-pricing.js'
import {auctionPricingScript} from './auction-script.js'

export interface PreviewedAuctionJob {
  job_id: string
  kind: string
  max_fee: string | null
  bid_closes_at: number | null
  deadline: number
  decision: 'commit' | 'declined' | 'committed_already'
  fee?: string
  why?: string
  reason?: AuctionDeclineReason
  detail?: string
  estimate_seconds?: number
}

export interface AuctionPreview {
  enabled: boolean
  strategy: string
  /** Jobs committed to or won and not done, from the agent's auction journal. */
  promised: number
  jobs: PreviewedAuctionJob[]
}

/**
 * The open auction jobs (§13) decided as the agent would decide them now, committing to nothing: filters, the
 * estimate from this machine's measured speed (never measured here: declined no_estimate; the agent measures once
 * at its first such job), the capacity the agent's journal says is promised, and the fee.
 */
export async function previewAuctions(loaded: LoadedConfig, client: ApiClient, providerPubkey: string): Promise<AuctionPreview | undefined> {
  const {jobs} = loaded.config
  const bidding = jobs.bidding
  if (!bidding) return undefined
  const api = new JobsApi(client, providerPubkey)
  const executors = createExecutors(jobs, {configPath: loaded.path, stateDir: loaded.paths.stateDir})
  const records = [...readAuctionRecords(auctionJournalPath(loaded.paths.stateDir)).values()].filter((record) => record.stage !== 'closed')
  const promised = records.map((record) => ({jobId: record.jobId, startAt: Math.max(Date.now(), record.revealClosesAt), seconds: record.estimateSeconds, deadline: record.deadline}))
  const programs = new Map<string, Buffer>()
  const fetchChecked = async (bytes: Promise<Buffer>, digest: string) => {
    const fetched = await bytes
    if (sha256Hex(fetched) !== digest) throw new Error(`the bytes do not match their digest ${digest}`)
    programs.set(digest, fetched)
    return fetched
  }
  try {
    const open = (await api.openJobs(0)).filter((job) => job.reward.mode === 'auction')
    const previewed: PreviewedAuctionJob[] = []
    for (const job of open) {
      const base = {job_id: job.job_id, kind: job.kind, max_fee: job.reward.max_fee ?? null, bid_closes_at: job.bid_closes_at ?? null, deadline: job.deadline}
      if (records.some((record) => record.jobId === job.job_id)) {
        previewed.push({...base, decision: 'committed_already'})
        continue
      }
      const verdict = await decideAuctionJob(job, {
        config: bidding,
        kinds: jobs.kinds.filter((kind) => executors.has(kind)),
        script: auctionPricingScript(loaded.path, bidding),
        runSlots: jobs.max_concurrent,
        program: async (of: Job) => programs.get(of.program.digest) ?? fetchChecked(api.program(of.program.digest), of.program.digest),
        input: async (of: Job) => fetchChecked(api.input(of.job_id), of.input.digest),
        estimate: async (of, program, input) => executors.get(of.kind)?.estimate({job: {...of, resources: {...of.resources, gpu_count: of.resources.gpu_count ?? 0}}, program, input}),
        promised: () => promised,
        now: Date.now,
      })
      const estimate = verdict.estimate ? {estimate_seconds: verdict.estimate.seconds} : {}
      previewed.push(verdict.kind === 'commit' ? {...base, decision: 'commit', fee: verdict.fee, why: verdict.why, ...estimate} : {...base, decision: 'declined', reason: verdict.reason, detail: verdict.detail, ...estimate})
    }
    return {enabled: bidding.enabled && jobs.enabled, strategy: bidding.strategy, promised: records.length, jobs: previewed}
  } finally {
    await Promise.all([...new Set(executors.values())].map((executor) => executor.close?.()))
  }
}
