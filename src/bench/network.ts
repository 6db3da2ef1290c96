import type {ApiClient} from '../core/api/client.js'

/**
 * Network to the marketplace endpoint. Latency: round trips of a small public GET on a kept-alive connection.
 * Throughput: PROTOCOL v1 has no bulk-transfer route, so upload is timed with a signed request carrying a 1 MiB body
 * (the protocol's limit) to the benchmark route: a server must read the whole body to check the signature over its
 * hash, then refuses it by schema (400), so nothing changes. Downloads are not measured (no route sends a large body).
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

  const body = paddingBody(UPLOAD_BYTES)
  const rates: number[] = []
  let note: string | undefined
  const uploadEnd = performance.now() + options.durationMs / 2
  do {
    const start = performance.now()
    const answer = await client.raw('POST', `/providers/${providerPubkey}/benchmarks`, {body})
    const elapsed = performance.now() - start
    if (answer.status !== 400) {
      note = `the upload probe expected 400 (body read, then refused by schema) and got ${answer.status}: upload not measured`
      break
    }
    rates.push(UPLOAD_BYTES / MIB / (Math.max(elapsed - latency, elapsed / 10) / 1000))
  } while ((performance.now() < uploadEnd || rates.length < 2) && rates.length < 50)

  return {
    endpoint: client.endpoint,
    latency_ms_median: latency,
    latency_ms_p90: percentile(latencies, 0.9),
    upload_mib_per_second: rates.length > 0 ? percentile(rates, 0.5) : null,
    samples: latencies.length,
    ...(note ? {note} : {}),
  }
}
