import type {ApiClient} from '../core/api/client.js'

/**
 * Network to the marketplace endpoint. Latency: round trips of a small public GET on a kept-alive connection.
 * Throughput: where the marketplace has the bulk routes (the devnet's `POST /bench/upload` and `GET /bench/download`,
 * unsigned, so the link is measured and not per-request signing), a BULK_BYTES body each way, less the same request
 * with one byte (the round trip and fixed cost). Elsewhere (PROTOCOL v1 has no bulk route) upload is timed with signed
 * requests carrying a 1 MiB body (the protocol's limit) to the benchmark route, which reads the whole body to check
 * the signature over its hash, then refuses it by schema (400), so nothing changes; the per-byte SHA-256 and JSON work
 * bounds that figure on a fast link. Downloads are then not measured: no v1 route sends a large body.
 */

const MIB = 2 ** 20
const SIGNED_UPLOAD_BYTES = MIB
const BULK_BYTES = 8 * MIB

export interface NetworkRun {
  endpoint: string
  latency_ms_median: number
  latency_ms_p90: number
  upload_mib_per_second: number | null
  download_mib_per_second: number | null
  /** How throughput was measured: the bulk routes, or signed 1 MiB uploads. */
  throughput_method: 'bulk' | 'signed'
  samples: number
  note?: string
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0
}

/** A JSON body of exactly `bytes` bytes that no benchmark schema accepts. */
function paddingBody(bytes: number): {padding: string} {
  const overhead = JSON.stringify({padding: ''}).length
  return {padding: 'x'.repeat(bytes - overhead)}
}

/** Times `large` and `small` alternately until `durationMs` has passed; the rate of the bytes between them. */
async function rateOf(bytes: number, durationMs: number, large: () => Promise<number | string>, small: () => Promise<number | string>): Promise<{rate: number | null; note?: string}> {
  const largeTimes: number[] = []
  const smallTimes: number[] = []
  const end = performance.now() + durationMs
  do {
    const smallTime = await small()
    const largeTime = await large()
    if (typeof smallTime === 'string') return {rate: null, note: smallTime}
    if (typeof largeTime === 'string') return {rate: null, note: largeTime}
    smallTimes.push(smallTime)
    largeTimes.push(largeTime)
  } while ((performance.now() < end || largeTimes.length < 3) && largeTimes.length < 50)
  const transferMs = percentile(largeTimes, 0.5) - percentile(smallTimes, 0.5)
  if (transferMs <= 0) return {rate: null, note: 'a large body took no longer than a tiny one: not measurable here'}
  return {rate: bytes / MIB / (transferMs / 1000)}
}

async function timed<T extends {status: number}>(request: () => Promise<T>, check: (answer: T) => string | undefined): Promise<number | string> {
  const start = performance.now()
  const answer = await request()
  const elapsed = performance.now() - start
  return check(answer) ?? elapsed
}

export async function measureNetwork(options: {client: ApiClient; providerPubkey: string; durationMs: number}): Promise<NetworkRun> {
  const {client, providerPubkey} = options
  const stakePath = `/providers/${providerPubkey}/stake`
  // The first request opens the connection; it is not a round trip of an open one.
  await client.raw('GET', stakePath, {public: true})
  const latencies: number[] = []
  const latencyEnd = performance.now() + options.durationMs / 3
  do {
    const start = performance.now()
    await client.raw('GET', stakePath, {public: true})
    latencies.push(performance.now() - start)
  } while ((performance.now() < latencyEnd || latencies.length < 5) && latencies.length < 200)
  const common = {endpoint: client.endpoint, latency_ms_median: percentile(latencies, 0.5), latency_ms_p90: percentile(latencies, 0.9), samples: latencies.length}

  const probe = await client.raw('GET', '/bench/download', {public: true, query: {bytes: 1}})
  if (probe.status === 200) {
    const body = Buffer.alloc(BULK_BYTES, 0x5a)
    const upload = (bytes: Buffer) => () =>
      timed(
        () => client.raw('POST', '/bench/upload', {public: true, bytes}),
        (answer) => (answer.status === 200 ? undefined : `the bulk upload answered ${answer.status}: upload not measured`),
      )
    const download = (bytes: number) => () =>
      timed(
        // Read and dropped, as curl -o /dev/null does: kept, each 8 MiB took fresh memory, slower than the link here.
        () => client.raw('GET', '/bench/download', {public: true, query: {bytes}, maxResponseBytes: bytes, discardBody: true}),
        (answer) => (answer.status === 200 && answer.size === bytes ? undefined : `the bulk download answered ${answer.status} with ${answer.size} bytes: download not measured`),
      )
    const up = await rateOf(BULK_BYTES - 1, options.durationMs / 3, upload(body), upload(body.subarray(0, 1)))
    const down = await rateOf(BULK_BYTES - 1, options.durationMs / 3, download(BULK_BYTES), download(1))
    const note = [up.note, down.note].filter(Boolean).join('; ')
    return {...common, upload_mib_per_second: up.rate, download_mib_per_second: down.rate, throughput_method: 'bulk', ...(note ? {note} : {})}
  }

  const signedUpload = (body: {padding: string}) => () =>
    timed(
      () => client.raw('POST', `/providers/${providerPubkey}/benchmarks`, {body}),
      (answer) => (answer.status === 400 ? undefined : `the upload probe expected 400 (body read, then refused by schema) and got ${answer.status}: upload not measured`),
    )
  const tiny = {padding: 'x'}
  const up = await rateOf(SIGNED_UPLOAD_BYTES - JSON.stringify(tiny).length, (options.durationMs * 2) / 3, signedUpload(paddingBody(SIGNED_UPLOAD_BYTES)), signedUpload(tiny))
  const note = ['the marketplace has no bulk routes: upload timed with signed 1 MiB requests, download not measured', up.note].filter(Boolean).join('; ')
  return {...common, upload_mib_per_second: up.rate, download_mib_per_second: null, throughput_method: 'signed', note}
}
