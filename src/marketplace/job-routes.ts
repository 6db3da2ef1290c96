import {isHex} from '../core/hex.js'
import type {AgentPermission} from '../core/delegation.js'
import {AttestationBook} from './attestation.js'
import {AuctionBook} from './auctions.js'
import {OPEN_JOBS_TOPIC, type MarketplaceContext} from './context.js'
import {notFound} from './http-error.js'
import {AttestationKeyBody, CommitmentBody, FailBody, JobBody, LeasesQuery, OpenJobsQuery, ResultEnvelopeBody, RevealBody, SlaQuery} from './job-schemas.js'
import {JobBook, MAX_BLOB_BYTES} from './jobs.js'
import type {ProviderRegistry} from './providers.js'
import {longPoll, parseBody, parseQuery, type Reply, type Route, type RouteAccess, type RouteRequest} from './routes.js'
import {EmptyBody, NoQuery} from './schemas.js'
import type {StakeBook} from './stake.js'

const ok = (body: unknown): Reply => ({status: 200, body})
const created = (body: unknown): Reply => ({status: 201, body})
const bytes = (data: Uint8Array): Reply => ({status: 200, bytes: data})

function param(request: RouteRequest, name: string): string {
  const value = request.params[name]
  if (value === undefined) throw new Error(`route parameter ${name} is missing`)
  return value
}

/** Job and lease ids are 32 hex characters, program digests 64: anything else names nothing. */
function hexParam(request: RouteRequest, name: string, bytes: number, what: string): string {
  const value = param(request, name)
  if (!isHex(value, bytes)) throw notFound(what)
  return value
}

function signerKey(request: RouteRequest): string {
  if (!request.identity) throw new Error('a signed route ran without a verified signer')
  return request.identity.pubkey
}

/** The routes of PROTOCOL §12 (jobs and leases), §13 (sealed-bid auctions) and §14 (attestation keys). */
export function buildJobRoutes(context: MarketplaceContext, stake: StakeBook, providers: ProviderRegistry): Route[] {
  const auctions = new AuctionBook(context)
  const attestation = new AttestationBook(context)
  const jobs = new JobBook(context, stake, auctions, attestation)

  const main: RouteAccess = {kind: 'provider', rule: {kind: 'main'}}
  const agent = (permission: AgentPermission): RouteAccess => ({kind: 'provider', rule: {kind: 'agent', permission}})
  const route = (method: Route['method'], path: string, access: RouteAccess, handle: Route['handle'], rawBodyLimit?: number): Route => ({
    method,
    segments: path.split('/').filter(Boolean),
    access,
    handle,
    ...(rawBodyLimit === undefined ? {} : {rawBodyLimit}),
  })
  const pk = (request: RouteRequest) => param(request, 'pk')
  const jobId = (request: RouteRequest) => hexParam(request, 'id', 16, 'job')
  const leaseId = (request: RouteRequest) => hexParam(request, 'lease', 16, 'lease')
  const noBody = (request: RouteRequest) => parseBody(EmptyBody, request.body)
  const noQuery = (request: RouteRequest) => parseQuery(NoQuery, request.query)

  return [
    // §12 programs and the renter's jobs
    route('POST', '/programs', {kind: 'signed'}, (request) => {
      noQuery(request)
      return created(jobs.putProgram(signerKey(request), request.rawBody))
    }, MAX_BLOB_BYTES),
    route('GET', '/programs/:digest', {kind: 'public'}, (request) => bytes(jobs.program(hexParam(request, 'digest', 32, 'program')))),
    route('POST', '/jobs', {kind: 'signed'}, (request) => created(jobs.createJob(signerKey(request), parseBody(JobBody, request.body)))),
    route('GET', '/jobs/:id', {kind: 'signed'}, (request) => {
      noQuery(request)
      return ok(jobs.jobFor(jobId(request), signerKey(request)))
    }),
    route('POST', '/jobs/:id/cancel', {kind: 'signed'}, (request) => {
      noBody(request)
      return ok(jobs.cancel(jobId(request), signerKey(request)))
    }),
    route('GET', '/jobs/:id/output', {kind: 'signed'}, (request) => bytes(jobs.resultOutput(jobId(request), signerKey(request)))),

    // §12 the agent's side
    route('GET', '/providers/:pk/jobs/open', agent('fetch_jobs'), async (request) => {
      const {wait = 0} = parseQuery(OpenJobsQuery, request.query)
      const providerPubkey = providers.row(pk(request)).pubkey
      const agentPubkey = signerKey(request)
      const found = await longPoll(
        (wake) => {
          const subscriptions = [
            context.jobs.subscribe(OPEN_JOBS_TOPIC, wake),
            context.jobs.subscribe(providerPubkey, wake),
            // A stake or contract change can make room in the tier.
            context.pending.subscribe(providerPubkey, wake),
          ]
          return () => subscriptions.forEach((unsubscribe) => unsubscribe())
        },
        wait * 1000,
        request,
        () => jobs.openJobs(providerPubkey, agentPubkey),
      )
      return ok({jobs: found})
    }),
    route('GET', '/providers/:pk/jobs/:id/input', agent('fetch_jobs'), (request) => bytes(jobs.input(pk(request), signerKey(request), jobId(request)))),
    route('POST', '/providers/:pk/jobs/:id/lease', agent('run_jobs'), (request) => {
      noBody(request)
      return created(jobs.lease(pk(request), signerKey(request), jobId(request)))
    }),
    route('GET', '/providers/:pk/leases', agent('fetch_jobs'), (request) => ok(jobs.leases(pk(request), parseQuery(LeasesQuery, request.query).status))),
    route('PUT', '/providers/:pk/leases/:lease', agent('run_jobs'), (request) => {
      noBody(request)
      return ok(jobs.renew(pk(request), leaseId(request)))
    }),
    route('PUT', '/providers/:pk/leases/:lease/output', agent('run_jobs'), (request) => created(jobs.putOutput(pk(request), leaseId(request), request.rawBody)), MAX_BLOB_BYTES),
    route('POST', '/providers/:pk/leases/:lease/result', agent('run_jobs'), async (request) =>
      ok(await jobs.submitResult(pk(request), leaseId(request), parseBody(ResultEnvelopeBody, request.body))),
    ),
    route('POST', '/providers/:pk/leases/:lease/fail', agent('run_jobs'), (request) => ok(jobs.fail(pk(request), leaseId(request), parseBody(FailBody, request.body)))),
    route('GET', '/providers/:pk/sla', {kind: 'public'}, (request) => {
      const {days = 30} = parseQuery(SlaQuery, request.query)
      return ok(jobs.sla(providers.row(pk(request)).pubkey, days))
    }),

    // §13 sealed-bid auctions
    route('POST', '/providers/:pk/jobs/:id/commitments', agent('run_jobs'), (request) =>
      created(jobs.commit(pk(request), signerKey(request), jobId(request), parseBody(CommitmentBody, request.body).commitment)),
    ),
    route('POST', '/providers/:pk/jobs/:id/reveals', agent('run_jobs'), (request) => {
      const body = parseBody(RevealBody, request.body)
      return ok(jobs.reveal(pk(request), jobId(request), body.fee, body.salt))
    }),
    route('GET', '/jobs/:id/auction', {kind: 'public'}, (request) => {
      noQuery(request)
      return ok(auctions.view(jobs.auctionJob(jobId(request))))
    }),

    // §14 attestation keys
    route('POST', '/providers/:pk/attestation-keys', main, (request) => created(attestation.enroll(pk(request), parseBody(AttestationKeyBody, request.body)))),
    route('GET', '/providers/:pk/attestation-keys', {kind: 'public'}, (request) => {
      noQuery(request)
      return ok(attestation.list(providers.row(pk(request)).pubkey))
    }),
    route('DELETE', '/providers/:pk/attestation-keys/:agent', main, (request) => {
      attestation.remove(pk(request), param(request, 'agent'))
      return {status: 204}
    }),
  ]
}
