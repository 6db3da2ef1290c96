import type {ApiClient} from '../core/api/client.js'

/**
 * Network to the marketplace endpoint. Latency: round trips of a small public GET on a kept-alive connection.
 * Throughput: PROTOCOL v1 has no bulk-transfer route, so upload is timed with signed requests carrying a 1 MiB body
 * (the protocol's limit) to the benchmark route: a server must read the whole body to check the signature over its
 * hash, then refuses it by schema (400), so nothing changes. The same request with a tiny body is timed beside it and
 * subtracted, which takes out the round trip and the fixed cost of a signed request (nonce, authorisation); the
 * per-byte work left (SHA-256 and JSON on both ends) is small next to a real link, but bounds the figure on loopback.
 * Downloads are not measured: no route sends a large body.
 */

const MIB = 2 ** 20
const UPLOAD_BYTES = MIB

export interface NetworkRun {
  endpoint: string
  latency_ms_median: number
  latency_ms_p90: number
  upload_mib_per_second: number | null
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

export async function measureNetwork(options: {client: ApiClient; providerPubkey: string; durationMs: number}): Promise<NetworkRun> {
  const {client, providerPubkey} = options
  const stakePath = `/providers/${providerPubkey}/stake`
  // The first request opens the connection; it is not a round trip of an open one.
  await client.raw('GET', stakePath, {public: true})
  const latencies: number[] = []
  const latencyEnd = performance.now() + options.durationMs / 2
  do {
    const start = performance.now()
    await client.raw('GET', stakePath, {public: true})
    latencies.push(performance.now() - start)
  } while ((performance.now() < latencyEnd || latencies.length < 5) && latencies.length < 200)
  const latency = percentile(latencies, 0.5)

  const large = paddingBody(UPLOAD_BYTES)
  const tiny = {padding: 'x'}
  const probe = async (body: {padding: string}): Promise<number | string> => {
    const start = performance.now()
    const answer = await client.raw('POST', `/providers/${providerPubkey}/benchmarks`, {body})
    const elapsed = performance.now() - start
    return answer.status === 400 ? elapsed : `the upload probe expected 400 (body read, then refused by schema) and got ${answer.status}: upload not measured`
  }
  const largeTimes: number[] = []
  const tinyTimes: number[] = []
  let note: string | undefined
  const uploadEnd = performance.now() + options.durationMs / 2
  do {
    const tinyTime = await probe(tiny)
    const largeTime = await probe(large)
    if (typeof tinyTime === 'string' || typeof largeTime === 'string') {
      note = typeof tinyTime === 'string' ? tinyTime : String(largeTime)
      break
    }
    tinyTimes.push(tinyTime)
    largeTimes.push(largeTime)
  } while ((performance.now() < uploadEnd || largeTimes.length < 3) && largeTimes.length < 50)
  const transferMs = percentile(largeTimes, 0.5) - percentile(tinyTimes, 0.5)
  if (!note && largeTimes.length > 0 && transferMs <= 0) note = 'a 1 MiB body took no longer than a tiny one: upload not measurable here'
  const uploadBytes = UPLOAD_BYTES - JSON.stringify(tiny).length

  return {
    endpoint: client.endpoint,
    latency_ms_median: latency,
    latency_ms_p90: percentile(latencies, 0.9),
    upload_mib_per_second: note === undefined && largeTimes.length > 0 ? uploadBytes / MIB / (transferMs / 1000) : null,
    samples: latencies.length,
    ...(note ? {note} : {}),
  }
}
